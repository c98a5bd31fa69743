"""`python -m training.bench ...` (what `redline bench` runs): see training.bench.cli."""

import sys

from training.bench.cli import main

sys.exit(main())
