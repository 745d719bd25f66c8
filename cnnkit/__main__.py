"""`python -m cnnkit` is the `cnnkit` command."""

import sys

from cnnkit.cli import main

sys.exit(main())
