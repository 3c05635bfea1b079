"""The GPU check's parts that need no GPU: its refusal without one, the validation of the CPU
run it compares with, and the comparison itself (on hand-written run directories)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check
from benchmarks.gpu_check import CheckError, compare, validate
from crlsc_fl.scenario.config import load_scenario


def write_run(run: Path, means: dict[str, float], per_device: dict[str, list[float]], config: dict | None = None,
              status: str = "completed") -> Path:
    run.mkdir(parents=True)
    summary = {"status": status, "elapsed_seconds": 10.0, "topologies": {t: {"knn_top1": {"mean": m}} for t, m in means.items()}}
    (run / "summary.json").write_text(json.dumps(summary))
    rows = [{"topology": t, "round": r, "device": d, "knn_top1": v - (2 - r)} for t, values in per_device.items()
            for r in (1, 2) for d, v in enumerate(values)]
    rows.append({"topology": "local", "round": 2, "device": 9, "error": "boom"})  # a failed device has no kNN
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "config.json").write_text(json.dumps({"run_id": 1, "scenario": config or {}}))
    return run


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "s.toml"
    path.write_text('[scenario]\nname = "x"\nrounds = 2\n\n[devices]\nnum-devices = 3\n\n[data]\ndataset = "synthetic"\n')
    return path


def test_accelerator_gpu_check_without_a_gpu_exits_3_and_runs_nothing(
    tmp_path: Path, scenario: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "report.json"
    assert gpu_check.main([str(scenario), "--cpu-results", str(tmp_path / "cpu"), "--out", str(out)]) == 3
    assert capsys.readouterr().err.startswith("error: no CUDA GPU: ")
    assert not out.exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("gpu_means", "passed"),
    [({"local": 31.4, "p2p": 28.0}, True), ({"local": 28.4, "p2p": 28.0}, False), ({"local": 30.0}, False)],
)
def test_accelerator_gpu_check_compares_each_topology_mean_within_the_tolerance(
    tmp_path: Path, gpu_means: dict[str, float], passed: bool
) -> None:
    cpu = write_run(tmp_path / "cpu", {"local": 30.0, "p2p": 28.5}, {"local": [30.0, 32.0, 28.0]})
    gpu = write_run(tmp_path / "gpu", gpu_means, {"local": [31.0, 29.0, 28.5]})
    ok, report = compare(cpu, gpu, tolerance=1.5)
    assert ok is passed
    if "p2p" not in gpu_means:
        assert report["p2p"] == {"ok": False, "reason": "only in the CPU run"}
    assert report["local"]["difference"] == pytest.approx(gpu_means["local"] - 30.0)
    devices = report["local"]["per_device"]  # the last round, paired by device
    assert devices["n"] == 3 and devices["mean_difference"] == pytest.approx(-0.5)
    assert devices["max_abs_difference"] == pytest.approx(3.0)


def test_accelerator_gpu_check_takes_only_a_completed_run_of_the_same_scenario(tmp_path: Path, scenario: Path) -> None:
    values = load_scenario(scenario).to_flat()
    machine = {"devices.accelerator": "cpu", "scenario.results-dir": "/elsewhere", "data.data-dir": "/data"}
    same = write_run(tmp_path / "same", {"local": 1.0}, {}, {**values, **machine})
    assert validate(scenario, same, 1.5)["status"] == "completed"
    assert validate(scenario, same, 1.5, ["devices.gpus-per-device=0.5"])["elapsed_seconds"] == 10.0
    with pytest.raises(CheckError, match=r"is a run of another scenario \(scenario.rounds: 2 in the CPU run, 3 here\)"):
        validate(scenario, same, 1.5, ["scenario.rounds=3"])
    other = write_run(tmp_path / "other", {"local": 1.0}, {}, {**values, "train.lr": 0.1})
    with pytest.raises(CheckError, match=r"train.lr: 0.1 in the CPU run, 0.005 here"):
        validate(scenario, other, 1.5)
    failed = write_run(tmp_path / "failed", {"local": 1.0}, {}, values, status="failed")
    with pytest.raises(CheckError, match="status 'failed', not 'completed'"):
        validate(scenario, failed, 1.5)
    with pytest.raises(CheckError, match="not a run directory"):
        validate(scenario, tmp_path, 1.5)
    with pytest.raises(CheckError, match=r"scenario .*missing.toml not found"):
        validate(tmp_path / "missing.toml", same, 1.5)
    with pytest.raises(CheckError, match="--tolerance=-1.0 must be >= 0"):
        validate(scenario, same, -1.0)
