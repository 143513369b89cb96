"""``python -m benchmarks.media [--quick] [--workdir DIR] [--variants]``."""

import sys

from benchmarks.media.run import main

sys.exit(main())
