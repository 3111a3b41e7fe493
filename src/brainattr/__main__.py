"""``python -m brainattr``: see :mod:`brainattr.book.cli`."""
import sys

from .book.cli import main

if __name__ == "__main__":
    sys.exit(main())
