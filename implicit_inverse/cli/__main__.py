"""``python -m implicit_inverse.cli``: the ``implicit-inverse`` command."""

import sys

from .main import main

sys.exit(main())
