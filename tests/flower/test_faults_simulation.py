"""Faults through a real Flower simulation (launcher run from the checkout).

One small faulty scenario (6 devices on a tiny CIFAR-10 copy given by a *relative*
``CRLSC_DATA_DIR``, cloud-edge and P2P, 2 rounds, 30% dropout, device 1 sent flipped KB
bytes and device 4 a KB of the wrong dimension) is run three times: once straight through
(the reference), once interrupted with SIGINT after the first checkpoint, and that run
resumed with ``--resume``, which must end with the reference's metrics. A last run shows
that too few successes fail the run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crlsc_fl import launch
from crlsc_fl.data.datasets import write_offline_cifar10
from crlsc_fl.data.synthetic import make_synthetic_images
from crlsc_fl.launcher.session import FlowerSession
from crlsc_fl.scenario.config import from_flat
from crlsc_fl.scenario.faults import dropped_devices

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "scenarios" / "ci.toml"
SETTINGS = {
    "data.dataset": "cifar10", "devices.num-devices": 6, "scenario.topologies": "cloud-edge,p2p", "scenario.rounds": 2,
    "stage2.devices": 0, "faults.dropout": 0.3, "faults.corrupt-kb": "1:flip,4:wrong-dim",
    "scenario.min-success-fraction": 0.5, "devices.architectures": "resnet18:1.0",  # small encoders: a fast test
}
# Device 1's KBs are corrupted whenever it is sent some; device 4 only gets the SKB in
# cloud-edge round 1 (it drops out of round 2). Seed 0 drops devices 3, 5 in round 1 and 4, 5 in round 2.
EXPECTED_ERRORS = {("cloud-edge", 1, 1), ("cloud-edge", 1, 4), ("cloud-edge", 2, 1), ("p2p", 2, 1)}
COMPARED = ("topology", "round", "device", "arch", "loss", "knn_top1", "knn_top5", "bytes_received", "bytes_sent", "error_type")


def default_sigint() -> None:
    """Ctrl-C as in a terminal. A job started in the background by a non-interactive shell
    (a CI runner, `nohup cmd &`) ignores SIGINT, children inherit that, and Python then
    installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def overrides(results: Path, **extra: Any) -> list[str]:
    out = []
    for key, value in {**SETTINGS, "scenario.results-dir": str(results), **extra}.items():
        out += ["--set", f"{key}={json.dumps(value) if isinstance(value, str) else value}"]
    return out


def rows(run_dir: Path, name: str = "metrics.jsonl") -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / name).read_text().splitlines() if line.strip()]


def comparable(run_dir: Path) -> list[tuple]:
    return sorted(tuple(r.get(k) for k in COMPARED) for r in rows(run_dir))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Run from the checkout with a relative data directory; private state and cache."""
    tmp = tmp_path_factory.mktemp("faults")
    images, labels = make_synthetic_images(720, seed=3)
    write_offline_cifar10(tmp / "data", "train", images[:600], labels[:600])
    write_offline_cifar10(tmp / "data", "test", images[600:], labels[600:])
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)
        patch.setenv("CRLSC_DATA_DIR", os.path.relpath(tmp / "data", REPO))
        patch.setenv("CRLSC_STATE_DIR", str(tmp / "state"))
        patch.setenv("CRLSC_CACHE_DIR", str(tmp / "cache"))
        yield {"tmp": tmp, "state": tmp / "state"}


@pytest.fixture(scope="module")
def reference(env: dict[str, Any]) -> tuple[Path, str, int]:
    """The faulty scenario straight through: (run dir, output, exit code)."""
    results = env["tmp"] / "reference"
    sessions: list[FlowerSession] = []
    with pytest.MonkeyPatch.context() as patch:
        out = Capture(patch)
        code = launch.main([str(SCENARIO), "--timeout", "600", *overrides(results)], sessions=sessions)
    assert sessions[0].supervisor.alive() == []
    (run_dir,) = (results / "ci").iterdir()
    return run_dir, out.text(), code


class Capture:
    """Collects what the launcher prints (module-scoped fixtures cannot use capsys)."""

    def __init__(self, patch: pytest.MonkeyPatch) -> None:
        import io

        self.buffer = io.StringIO()
        patch.setattr(sys, "stdout", self.buffer)

    def text(self) -> str:
        return self.buffer.getvalue()


def test_missing_named_data_dir_exits_2_before_flower_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRLSC_DATA_DIR", "no/such/dir")
    code = launch.main([str(SCENARIO), "--set", 'data.dataset="cifar10"', "--app", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"not found under {tmp_path / 'no/such/dir'}: expected" in err and "No download was tried" in err
    assert not (tmp_path / ".flwr").exists()


@pytest.mark.slow
def test_dropout_and_bad_kbs_through_flower_with_a_relative_data_dir(env: dict[str, Any], reference: tuple[Path, str, int]) -> None:
    run_dir, out, code = reference
    assert code == 0, out[-4000:]
    config = json.loads((run_dir / "config.json").read_text())["scenario"]
    assert config["data.data-dir"] == str((env["tmp"] / "data").resolve())  # resolved against the user's cwd
    cfg = from_flat(config)
    participation = rows(run_dir, "participation.jsonl")
    metrics = rows(run_dir)
    def dropped_in(server_round: int) -> set[int]:
        return dropped_devices(cfg.faults, cfg.devices.num_devices, cfg.scenario.seed, server_round)

    for p in participation:  # the seeded dropouts, recorded; every other device was sent a message
        dropped = dropped_in(p["round"])
        assert p["dropped"] == sorted(dropped) and p["sent"] == 6 - len(dropped)
        got = {r["device"] for r in metrics if (r["topology"], r["round"]) == (p["topology"], p["round"])}
        assert got == set(range(6)) - dropped
        assert p["corrupted_kb"] == sorted({1, 4} & {e[2] for e in EXPECTED_ERRORS if e[:2] == (p["topology"], p["round"])})
    errors = {(r["topology"], r["round"], r["device"]): r for r in metrics if "error" in r}
    assert set(errors) == EXPECTED_ERRORS
    assert all(e["error_type"] == "KnowledgeBaseError" for e in errors.values())
    assert "do not match the SHA-256" in errors[("cloud-edge", 1, 1)]["error_message"]
    assert "output dimension 384 does not match the knowledge base dimension 400" in errors[("cloud-edge", 1, 4)]["error_message"]
    for topology in ("cloud-edge", "p2p"):  # the ledger holds only what moved
        transfers = json.loads((run_dir / f"communication-{topology}.json").read_text())["transfers"]
        for t in transfers:
            for end in (t["src"], t["dst"]):
                assert not (end.startswith("device-") and int(end.split("-")[1]) in dropped_in(t["server_round"])), t
        if topology == "p2p":  # device 3's neighbours: 2 (present) sends its PKB, 4 (dropped) sends nothing
            assert {t["src"] for t in transfers if t["dst"] == "device-3"} == {"device-2"}
        if topology == "cloud-edge":  # device 1 is sent the SKB again after rejecting it
            assert [t["server_round"] for t in transfers if t["dst"] == "device-1"] == [1, 2]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["errors"] == 4
    assert summary["topologies"]["cloud-edge"]["errors_by_round"] == {"1": 2, "2": 1}
    assert summary["topologies"]["p2p"]["dropped_by_round"] == {"1": 2, "2": 2}
    assert "KnowledgeBaseError" in out and ", 1 errors," in out  # first errors and the progress line
    assert not (run_dir / "checkpoints").exists()


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_reference_metrics(env: dict[str, Any], reference: tuple[Path, str, int],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    results = env["tmp"] / "interrupted"
    cmd = [sys.executable, "-m", "crlsc_fl.launch", str(SCENARIO), "--timeout", "600", *overrides(results)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=default_sigint)
    deadline = time.monotonic() + 400
    while not list(results.glob("ci/*/checkpoints/cloud-edge.pt")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # Ctrl-C during cloud-edge round 2
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-3000:]
    (run_dir,) = (results / "ci").iterdir()
    state = env["state"] / run_dir.name
    assert f"device state of run {run_dir.name} kept for --resume: {state} (" in out
    assert f"--resume {run_dir}" in out and f"rm -rf {state}" in out
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"

    assert launch.main(["--resume", str(run_dir), "--timeout", "600"]) == 0, capsys.readouterr().out[-4000:]
    assert comparable(run_dir) == comparable(reference[0])
    ledger = [json.loads((d / "communication-p2p.json").read_text())["summary"] for d in (run_dir, reference[0])]
    assert ledger[0] == ledger[1]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and len(summary["flower_run_ids"]) == 2

    assert state.is_dir() and not list(state.glob("*/device-*"))  # each topology's state removed once it was done

    capsys.readouterr()
    assert launch.main(["--clean"]) == 0
    assert f"removed {state}" in capsys.readouterr().out and not state.exists()


@pytest.mark.slow
def test_too_few_successes_fail_the_run(env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    results = env["tmp"] / "failing"
    extra = {"devices.num-devices": 2, "scenario.topologies": "cloud-edge", "scenario.rounds": 1, "faults.dropout": 0.0,
             "faults.corrupt-kb": "0:flip", "scenario.min-success-fraction": 0.9}
    code = launch.main([str(SCENARIO), "--timeout", "600", *overrides(results, **extra)])
    out = capsys.readouterr().out
    assert code == 1, out[-3000:]
    (run_dir,) = (results / "ci").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "only 1 of 2 devices" in summary["failure"]
    assert summary["first_errors"] == [{"device": 0, "topology": "cloud-edge", "round": 1, "error_type": "KnowledgeBaseError",
                                        "error_message": summary["first_errors"][0]["error_message"]}]
    assert "finished:failed" in out and "device 0 (cloud-edge, round 1): KnowledgeBaseError" in out
    assert "kept for --resume" in out
