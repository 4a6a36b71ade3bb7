"""``python -m multibone`` runs the command line."""

import sys

from multibone.cli import main

sys.exit(main())
