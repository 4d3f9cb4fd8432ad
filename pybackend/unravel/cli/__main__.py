"""`python -m unravel.cli`: the `unravel` command."""

import sys

from unravel.cli import main

sys.exit(main())
