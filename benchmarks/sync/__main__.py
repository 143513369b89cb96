"""``python -m benchmarks.sync``: see benchmarks/sync/run.py."""

import sys

from benchmarks.sync.run import main

sys.exit(main())
