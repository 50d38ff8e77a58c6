"""``python -m emosphere`` (and ``torchrun ... -m emosphere``): the ``emosphere`` command."""

import sys

from .cli import main

sys.exit(main())
