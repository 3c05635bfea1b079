"""``python -m crlsc_fl.scenario [--write pyproject.toml]``: the scenario keys' defaults block."""

import sys

from crlsc_fl.scenario.config import main

sys.exit(main())
