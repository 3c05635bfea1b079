"""``python -m crlsc_fl.scenario [--keys] [--write pyproject.toml README.md]``: the keys' generated docs."""

import sys

from crlsc_fl.scenario.key_docs import main

sys.exit(main())
