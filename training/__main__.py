"""`python -m training ...` (and `accelerate launch -m training train ...`): see training.cli."""

import sys

from training.cli import main

sys.exit(main())
