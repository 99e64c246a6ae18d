"""`python -m unibus …` is the `unibus` command."""

import sys

from .cli import main

sys.exit(main())
