"""The refactor check: seeded runs compared without what measures the machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.same_results import main


def write_run(run: Path, knn: float, seconds: float, records: list[dict]) -> Path:
    run.mkdir(parents=True)
    node = f"node-of-run-{seconds}"  # where a round ran differs from run to run, like the seconds
    rows = [{"topology": "p2p", "round": 1, "device": d, "knn_top1": knn + d, "train_seconds": seconds, "node": node,
             "host": node} for d in range(3)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "communication-p2p.json").write_text(json.dumps({"records": records}))
    summary = {"topologies": {"p2p": {"knn_top1": knn, "device_rounds_by_node": {node: 3}}}, "elapsed_seconds": seconds}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


RECORDS = [{"kind": "kb", "src": "device-1", "nbytes": 10}, {"kind": "kb", "src": "device-2", "nbytes": 20}]


@pytest.mark.parametrize(
    ("knn", "records", "same"),
    [
        (30.0, RECORDS, True),  # only wall-clock seconds and the nodes differ
        (30.0, RECORDS[::-1], True),  # transfers recorded in another arrival order
        (30.5, RECORDS, False),
        (30.0 + 30.0 * 1e-15, RECORDS, True),  # an aggregate summed in another order
        (30.0, [RECORDS[0], {**RECORDS[1], "nbytes": 21}], False),
    ],
)
def test_only_the_method_s_results_count(tmp_path: Path, knn: float, records: list[dict], same: bool) -> None:
    before = write_run(tmp_path / "before", 30.0, 1.0, RECORDS)
    after = write_run(tmp_path / "after", knn, 2.0, records)
    assert main([str(before), str(after)]) == (0 if same else 1)


def test_common_files_compares_what_both_runs_hold(tmp_path: Path) -> None:
    committed = write_run(tmp_path / "committed", 30.0, 1.0, RECORDS)  # line files partly not committed
    fresh = write_run(tmp_path / "fresh", 30.0, 2.0, RECORDS)
    (fresh / "stage2.jsonl").write_text(json.dumps({"device": 0, "psnr": 14.0}) + "\n")
    assert main([str(committed), str(fresh)]) == 1
    assert main([str(committed), str(fresh), "--common-files"]) == 0
