"""End to end: the 5-device, 2-round CI scenario through a real Flower simulation, with the
offline image mentor (EfficientNet-Lite0 at 64 px, PCA to 32 dims) grounding the devices
(``crlsc-grounded``: the SKB and 50 anchors go cloud -> edge -> device), and P2P / hybrid
devices exchanging anchor-keyed PKBs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crlsc_fl import launch
from crlsc_fl.launcher.session import FlowerSession
from strategies import STRATEGIES

TOPOLOGIES = STRATEGIES.names()

REPO = Path(__file__).resolve().parents[2]
GROUNDED_IMAGE_MENTOR = {
    "devices.width": 0.5, "kb.server-model": "efficientnet-lite0", "kb.source": "image", "kb.image-size": 64, "kb.dim": 32, "kb.m": 8,
    "kb.anchors": 50, "train.kb-method": "crlsc-grounded", "grounding.anchor-batch": 16, "fusion.top-n": 10,
    "fusion.noise-variance": 0.2 / 32, "fusion.query": "normalized", "fusion.scale": "temperature",
    "topology.peer-knowledge": "anchor-pkb",  # p2p and hybrid devices ground each other (the paper's PKBs: other simulations)
}


@pytest.mark.slow
def test_ci_scenario_simulation_writes_metrics_summary_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "results"
    monkeypatch.setenv("CRLSC_STATE_DIR", str(tmp_path / "state"))
    sessions: list[FlowerSession] = []
    widths = {"devices.architectures": "resnet18:0.6,resnet34@0.25:0.2,resnet50:0.2"}  # resnet34 x 0.25, the others x 0.5
    overrides = [f"scenario.results-dir={results}"] + [
        f"{k}={json.dumps(v)}" for k, v in {**GROUNDED_IMAGE_MENTOR, **widths}.items()
    ]
    code = launch.main(
        [str(REPO / "scenarios" / "ci.toml"), "--timeout", "600", *(a for o in overrides for a in ("--set", o))],
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
    for key in ("arch", "loss", "knn_top1", "knn_top5", "bytes_received", "bytes_sent", "train_seconds", "parameters", "flops_per_image"):
        assert all(key in r for r in rows), key
    resnet18 = [r for r in rows if r["arch"] == "resnet18"]
    assert resnet18 and all(r["parameters"] < 3e6 for r in resnet18)  # width 0.5: ~2.8 M instead of 11.2 M
    assert {(r["arch"], r["width"]) for r in rows} == {("resnet18", 0.5), ("resnet34", 0.25), ("resnet50", 0.5)}
    mentor = json.loads((run_dir / "mentor.json").read_text())
    assert mentor["model"] == "efficientnet-lite0:imagenet1k:64px" and mentor["dim"] == 32 and mentor["anchors"] == 50
    for topology in ("cloud-edge", "p2p", "hybrid"):  # every grounded device got the anchors, once
        transfers = json.loads((run_dir / f"communication-{topology}.json").read_text())["transfers"]
        received = [t["dst"] for t in transfers if t["kind"] == "anchors" and t["tier"] == "edge-device"]
        assert sorted(received) == [f"device-{d}" for d in range(5)], topology
        assert all(t["nbytes"] == mentor["anchor_bytes"] for t in transfers if t["kind"] == "anchors")
    for topology in ("p2p", "hybrid"):  # from round 2, peers' anchor-keyed PKBs (50 x 32 float16 keys) move device to device
        transfers = json.loads((run_dir / f"communication-{topology}.json").read_text())["transfers"]
        peer_views = [t for t in transfers if t["kind"] == "anchor-pkb"]
        assert peer_views and all(t["tier"] == "d2d" and t["server_round"] == 2 for t in peer_views), topology
        assert all(50 * 32 * 2 < t["nbytes"] < 50 * 32 * 2 + 400 for t in peer_views)
    full_summary = json.loads((run_dir / "summary.json").read_text())
    summary = full_summary["topologies"]
    footprint = full_summary["footprint"]
    assert footprint["device_state_bytes"] > 0 and footprint["peak_memory_bytes"] > 2**30  # SuperLink, Ray, actors
    for topology in TOPOLOGIES:
        assert set(summary[topology]["seconds_per_round"]) == {"1", "2"}
        assert set(summary[topology]["knn_top1_by_round"]["2"]) >= {"mean", "std", "ci95"}
        assert "resnet34" in summary[topology]["knn_top1_by_arch_by_round"]["2"]
    assert summary["local"]["architectures"]["resnet34"]["width"] == 0.25
    state = tmp_path / "state" / run_dir.name  # each topology's device state went once it was done
    assert state.is_dir() and not list(state.glob("*/device-*"))
    assert summary["local"]["bytes_per_device"]["mean"] == 0
    assert 0 < summary["cloud-edge"]["bytes_per_device"]["mean"] < summary["fedavg"]["bytes_per_device"]["mean"]
    for name in ("accuracy_vs_round.png", "accuracy_vs_round_by_arch.png", "accuracy_by_arch.png", "accuracy_vs_bytes.png",
                 "config.json"):
        assert (run_dir / name).stat().st_size > 0, name
    assert "devices done" in out  # progress is streamed
    stage2 = [json.loads(line) for line in (run_dir / "stage2.jsonl").read_text().splitlines()]
    assert len(stage2) == len(TOPOLOGIES) * 2 and all("psnr" in r for r in stage2)
    assert (run_dir / "stage2_psnr.png").stat().st_size > 0
