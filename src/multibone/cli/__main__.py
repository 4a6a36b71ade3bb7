"""``python -m multibone.cli`` (e.g. under ``torchrun -m multibone.cli train-images ...``)."""

import sys

from multibone.cli import main

sys.exit(main())
