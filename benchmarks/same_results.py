"""Do two runs of a scenario give the same results? (A check for refactors: runs are seeded.)

    python -m benchmarks.same_results RESULTS_DIR_BEFORE RESULTS_DIR_AFTER [--common-files]

Compares every per-device line file (metrics, participation, stage 2), each topology's
communication ledger (records in any order: uploads are recorded as replies arrive) and
``summary.json``, leaving out what measures the machine rather than the method: wall-clock
seconds, CPU use, memory, run ids, the node and host each round ran on. Simulated seconds
(compute profiles, link times) are compared. Floats count as equal within a relative 1e-12
(aggregates of the same values summed in another order).
Exit 0 when everything is identical, 1 otherwise, with the first difference of each file.
``--common-files`` compares only the files both hold (e.g. against a committed run whose
line files were not all committed) and does not require the same set of files.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

FLOAT_TOLERANCE = 1e-12  # relative: far below any metric's precision, above summation-order noise
LINE_FILES = ("metrics.jsonl", "participation.jsonl", "stage2.jsonl")
MACHINE_FIELDS = {
    "seconds", "train_seconds", "eval_seconds", "wall_seconds", "elapsed_seconds", "memory_sample_seconds",
    "train_seconds_per_device_round", "seconds_per_round", "peak_memory_bytes", "device_state_bytes", "memory_root_pid",
    "run_id", "flower_run_ids", "footprint", "status", "device_seconds", "cpu_use",
    "node", "host", "device_rounds_by_node",  # where each device-round ran (Ray node ids differ from run to run)
}


def without_machine_fields(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_machine_fields(v) for k, v in value.items() if k not in MACHINE_FIELDS}
    if isinstance(value, list):
        return [without_machine_fields(v) for v in value]
    return value


def canonical(value: Any) -> Any:
    """Lists of records sorted, so that arrival order does not count."""
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted((canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    return value


def load(path: Path) -> Any:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return json.loads(path.read_text())


def first_difference(a: Any, b: Any, where: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = first_difference(a.get(key), b.get(key), f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} vs {len(b)} entries"
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{where}[{i}]")
            if found:
                return found
        return None
    if isinstance(a, float) and isinstance(b, float) and math.isclose(a, b, rel_tol=FLOAT_TOLERANCE, abs_tol=1e-300):
        return None  # the same values summed in another order (replies arrive in any order)
    return None if a == b else f"{where}: {a!r} != {b!r}"


def compare(before: Path, after: Path, common_files: bool = False) -> list[tuple[str, str | None]]:
    """(file, first difference or None) for every compared file."""
    names = [*LINE_FILES, *sorted(p.name for p in before.glob("communication-*.json")), "summary.json"]
    report = []
    for name in names:
        if not (before / name).exists() and not (after / name).exists():
            continue
        if not (before / name).exists() or not (after / name).exists():
            if not common_files:
                report.append((name, "present in only one run"))
            continue
        a, b = (canonical(without_machine_fields(load(run / name))) for run in (before, after))
        report.append((name, first_difference(a, b)))
    files = [sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()) for run in (before, after)]
    if not common_files:
        report.append(("(the set of files)", None if files[0] == files[1] else f"{set(files[0]) ^ set(files[1])}"))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.same_results", description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--common-files", action="store_true", help="compare only the files both runs hold")
    args = parser.parse_args(argv)
    report = compare(args.before, args.after, args.common_files)
    for name, difference in report:
        print(f"{name}: {'identical' if difference is None else 'DIFFERENT: ' + difference}")
    same = all(difference is None for _, difference in report)
    print("same results" if same else "results differ")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
