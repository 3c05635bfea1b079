"""``python -m crlsc_fl.launch``: run one scenario as a Flower simulation (= ``crlsc-fl run``).

    python -m crlsc_fl.launch SCENARIO.toml [--set KEY=VALUE ...] [--timeout S]
        [--num-supernodes N] [--federation-config "k=v ..."] [--app DIR]
    python -m crlsc_fl.launch --resume RESULTS_DIR   # continue an interrupted or failed run
    python -m crlsc_fl.launch --clean                # delete device state of finished/abandoned runs

What a run does and its exit codes: :mod:`crlsc_fl.launcher.cli`.
"""

from __future__ import annotations

import sys

# The one implementation (also behind `crlsc-fl run`): main(argv=None, *, prog=..., sessions=None) -> exit code.
from crlsc_fl.launcher.cli import run_main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
