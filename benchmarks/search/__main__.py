"""``python -m benchmarks.search --lessons 100000``."""

import sys

from benchmarks.search.run import main

sys.exit(main())
