"""End to end: the 5-device, 2-round CI scenario through a real Flower simulation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crlsc_fl import flwr_cli, launch
from crlsc_fl.config import TOPOLOGIES

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_ci_scenario_simulation_writes_metrics_summary_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    sessions: list[flwr_cli.FlowerSession] = []
    code = launch.main(
        [str(REPO / "scenarios" / "ci.toml"), "--timeout", "600", "--set", f"scenario.results-dir={results}"],
        sessions=sessions,
    )
    out = capsys.readouterr().out
    assert code == 0, out[-4000:]
    assert sessions[0].supervisor.alive() == []
    (run_dir,) = (results / "ci").iterdir()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == len(TOPOLOGIES) * 2 * 5  # topology x round x device
    assert not [r for r in rows if "error" in r]
    assert {r["topology"] for r in rows} == set(TOPOLOGIES)
    for key in ("arch", "loss", "knn_top1", "knn_top5", "bytes_received", "bytes_sent", "train_seconds"):
        assert all(key in r for r in rows), key
    summary = json.loads((run_dir / "summary.json").read_text())["topologies"]
    assert summary["local"]["bytes_per_device"]["mean"] == 0
    assert 0 < summary["cloud-edge"]["bytes_per_device"]["mean"] < summary["fedavg"]["bytes_per_device"]["mean"]
    for name in ("accuracy_vs_round.png", "accuracy_by_arch.png", "accuracy_vs_bytes.png", "config.json"):
        assert (run_dir / name).stat().st_size > 0, name
    assert "devices done" in out  # progress is streamed
    stage2 = [json.loads(line) for line in (run_dir / "stage2.jsonl").read_text().splitlines()]
    assert len(stage2) == len(TOPOLOGIES) * 2 and all("psnr" in r for r in stage2)
    assert (run_dir / "stage2_psnr.png").stat().st_size > 0
