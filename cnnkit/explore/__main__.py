"""``python -m cnnkit.explore``: the same as `cnnkit explore`."""

import sys

from cnnkit.explore import main

sys.exit(main())
