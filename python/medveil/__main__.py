"""Allow ``python -m medveil``."""

import sys

from medveil.cli.main import main

sys.exit(main())
