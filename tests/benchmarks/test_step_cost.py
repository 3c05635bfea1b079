"""benchmarks/step_cost.py runs end to end and reports what its README figure reads (a smoke
test of the script on generated images: no timing is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import step_cost

SCENARIO = """
[data]
dataset = "synthetic"
[devices]
architectures = "resnet18@0.25:0.5,resnet34@0.25:0.5"
[train]
batch-size = 8
one-pass = true
channels-last = true
[kb]
source = "random"
server-model = "efficientnet-lite0"
dim = 16
m = 4
nbits = 4
anchors = 20
[grounding]
anchor-batch = 4
"""


def test_step_cost_report_names_the_worst_ratio(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "step_cost.json"
    step_cost.main(["--scenario", str(scenario), "--steps", "2", "--warmup", "1", "--out", str(out)])
    report = json.loads(out.read_text())
    assert {(r["arch"], r["method"]) for r in report["rows"]} == {
        (a, m) for a in ("resnet18", "resnet34") for m in ("crlsc-grounded", "dcl")}
    assert report["ratio_device_step_over_bare_step"] == max(r["ratio"] for r in report["rows"])
    assert report["augmentation_in_device_step"] and not report["augmentation_in_bare_step"]
    assert all(r["device_step_seconds"] > 0 and r["bare_step_seconds"] > 0 and r["bare_reference_step_seconds"] > 0
               for r in report["rows"])
    assert report["train"] == {"batch_size": 8, "one_pass": True, "channels_last": True, "precision": "float32", "anchor_batch": 4}
