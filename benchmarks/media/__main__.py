"""``python -m benchmarks.media [--quick] [--workdir DIR] [--variants] [--input slides|camera]``."""

import sys

from benchmarks.media.run import main

sys.exit(main())
