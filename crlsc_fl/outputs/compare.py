"""Compare finished runs in one set of figures.

    python -m crlsc_fl.outputs.compare results/quick/<run-a> results/p2p/<run-b> --out results/compare
    crlsc-fl compare results/quick/<run-a> results/p2p/<run-b> --out results/compare
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from crlsc_fl.outputs.plots import plot_runs
from crlsc_fl.outputs.results import read_metrics, summarize


def build_parser(prog: str = "python -m crlsc_fl.outputs.compare") -> argparse.ArgumentParser:
    """The command line of ``python -m crlsc_fl.outputs.compare`` / ``crlsc-fl compare``."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (holding metrics.jsonl)")
    parser.add_argument("--out", type=Path, required=True)
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m crlsc_fl.outputs.compare") -> int:
    """Entry point; returns the exit code (2 with a usage message for a run without metrics)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    runs = {}
    for run in args.runs:
        try:
            rows = read_metrics(run)
        except FileNotFoundError as err:
            parser.error(str(err))
        label = f"{run.parent.name}/{run.name}:" if len(args.runs) > 1 else ""
        runs[label] = rows
    paths = plot_runs(runs, args.out)
    summary = {label or str(args.runs[0]): summarize(rows) for label, rows in runs.items()}
    (args.out / "comparison.json").write_text(json.dumps(summary, indent=2))
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
