"""The run directory's one writer: what each file holds, in which order, and trimming on resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crlsc_fl.bookkeeping.ledger import CommLedger
from crlsc_fl.environment import PROJECT_ROOT_ENV
from crlsc_fl.outputs.report import RunReport
from crlsc_fl.outputs.results import read_metrics
from crlsc_fl.outputs.run_dir import RunDirectory, error_row
from crlsc_fl.scenario.config import from_flat
from crlsc_fl.scenario.devices import DeviceSpec
from crlsc_fl.scenario.network import NetworkConfig

DEVICES = [DeviceSpec(0, "resnet18", "phone", 0.5), DeviceSpec(1, "resnet50", "laptop"), DeviceSpec(2, "resnet18", "phone", 0.5)]


def test_device_rows_list_failures_first_and_default_transfers_to_zero(tmp_path: Path) -> None:
    run_dir = RunDirectory(tmp_path / "run")
    failed = {2: error_row("NoReply", "no reply"), 0: error_row("NodeOffline", "gone")}
    succeeded = {1: {"knn_top1": 40.0, "bytes_received": 1000}}
    run_dir.append_device_rows("p2p", 3, DEVICES, failed, succeeded)
    run_dir.append_device_rows("p2p", 4, DEVICES, {}, {0: {"knn_top1": 20.0}})  # appended, not rewritten
    rows = read_metrics(run_dir.path)
    assert [(r["round"], r["device"], "error" in r) for r in rows] == [(3, 2, True), (3, 0, True), (3, 1, False), (4, 0, False)]
    assert rows[0] == {"topology": "p2p", "round": 3, "device": 2, "arch": "resnet18", "width": 0.5, "profile": "phone",
                       "bytes_received": 0, "bytes_sent": 0, "transfer_seconds": 0.0,
                       "error": "NoReply: no reply", "error_type": "NoReply", "error_message": "no reply"}
    assert rows[2]["bytes_received"] == 1000 and rows[2]["bytes_sent"] == 0 and rows[2]["arch"] == "resnet50"
    assert list(rows[2])[:9] == list(rows[0])[:9]  # every line starts with the same columns


def test_round_files_and_communication(tmp_path: Path) -> None:
    run_dir = RunDirectory(tmp_path)
    ledger = CommLedger(NetworkConfig())
    ledger.record(1, "kb", "cloud", "edge-0", "cloud-edge", 500)
    ledger.record(1, "kb", "edge-0", "device-1", "edge-device", 500)
    run_dir.write_communication("cloud-edge", ledger)
    run_dir.append_participation({"topology": "cloud-edge", "round": 1, "failed": []})
    run_dir.append_round_time({"label": "ci/cloud-edge", "round": 1, "wall_seconds": 2.5})
    run_dir.append_stage2([{"topology": "cloud-edge", "device": 0, "psnr": 12.0}, {"topology": "cloud-edge", "device": 1, "psnr": 13.0}])
    communication = json.loads((tmp_path / "communication-cloud-edge.json").read_text())
    assert communication["summary"]["total_bytes"] == 1000 and len(communication["transfers"]) == 2
    assert read_metrics(tmp_path, "participation.jsonl") == [{"topology": "cloud-edge", "round": 1, "failed": []}]
    assert read_metrics(tmp_path, "rounds.jsonl")[0]["wall_seconds"] == 2.5
    assert [r["psnr"] for r in read_metrics(tmp_path, "stage2.jsonl")] == [12.0, 13.0]
    assert not list(tmp_path.glob("*.tmp"))  # JSON files are written atomically


def test_config_checkpoints_and_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROJECT_ROOT_ENV, str(tmp_path))
    cfg = from_flat({"scenario.name": "ci", "scenario.results-dir": "out"})
    run_dir = RunDirectory.for_run(cfg, 123)
    assert run_dir.path == tmp_path / "out" / "ci" / "123" and run_dir.path.is_dir()
    run_dir.write_config(123, cfg.to_flat())
    assert run_dir.recorded_run_id() == "123"
    assert json.loads((run_dir.path / "config.json").read_text())["scenario"] == cfg.to_flat()
    run_dir.checkpoints.save("p2p", 2, {"pkbs": {1: "pkb-p2p-d1-r2"}})
    assert (run_dir.path / "checkpoints" / "p2p.pt").exists() and run_dir.checkpoints.progress(("p2p", "local")) == {"p2p": (2, False)}


def test_summary_is_written_with_plots_once_a_device_succeeded(tmp_path: Path) -> None:
    run_dir = RunDirectory(tmp_path)
    report = RunReport(run_dir, "7", 7, start=0.0)
    assert report.write("running")["topologies"] == {} and not list(tmp_path.glob("*.png"))  # nothing to plot yet
    run_dir.append_device_rows("local", 1, DEVICES, {}, {d.device: {"knn_top1": 10.0 * (d.device + 1), "knn_top5": 50.0,
                                                                     "train_seconds": 1.0} for d in DEVICES})
    payload = report.write("completed")
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(payload))
    assert payload["status"] == "completed" and payload["topologies"]["local"]["knn_top1"]["mean"] == pytest.approx(20.0)
    assert (tmp_path / "accuracy_vs_round.png").exists()


def test_resume_drops_result_lines_after_the_checkpoints(tmp_path: Path) -> None:
    rows = [{"topology": t, "round": r, "device": 0} for t in ("local", "p2p") for r in (1, 2)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "stage2.jsonl").write_text(json.dumps({"topology": "local"}) + "\n" + json.dumps({"topology": "p2p"}) + "\n")
    (tmp_path / "rounds.jsonl").write_text("".join(json.dumps({"label": f"ci/{t}", "round": 2}) + "\n" for t in ("local", "p2p")))
    RunDirectory(tmp_path).trim_rounds({"local": (2, True), "p2p": (1, False)})
    kept = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["topology"], r["round"]) for r in kept] == [("local", 1), ("local", 2), ("p2p", 1)]
    assert [json.loads(x)["topology"] for x in (tmp_path / "stage2.jsonl").read_text().splitlines()] == ["local"]
    assert [json.loads(x)["label"] for x in (tmp_path / "rounds.jsonl").read_text().splitlines()] == ["ci/local"]
