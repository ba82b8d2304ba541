"""``python -m alphaprune``: see :mod:`alphaprune.cli`."""

import sys

from .cli import main

sys.exit(main())
