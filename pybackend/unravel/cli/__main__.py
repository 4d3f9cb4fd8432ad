"""`python -m unravel.cli`: the `unravel` command."""

import sys

from unravel.cli import main

if __name__ == "__main__":  # not in the worker processes of --jobs, which import this module
    sys.exit(main())
