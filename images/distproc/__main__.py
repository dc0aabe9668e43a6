"""``python -m distproc``: see ``distproc.cli``."""

import sys

from .cli import main

sys.exit(main())
