"""``python -m brainattr``: see :mod:`brainattr.cli`."""
import sys

from .cli import main

sys.exit(main())
