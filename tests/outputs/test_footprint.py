"""The run's footprint: peak device state on disk, the measured process tree, resumed runs;
and the ServerApp removing a finished topology's device state unless told to keep it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crlsc_fl.environment import MEMORY_ROOT_ENV
from crlsc_fl.outputs.footprint import Footprint, memory_root
from crlsc_fl.scenario.config import from_flat


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", "self"), ("not-a-pid", "self"), ("999999999", "self"), ("parent", "parent")],
)
def test_memory_root_is_the_named_live_process_or_this_one(value: str, expected: str) -> None:
    named = str(os.getppid()) if value == "parent" else value
    assert memory_root({MEMORY_ROOT_ENV: named}) == (os.getppid() if expected == "parent" else os.getpid())


def test_device_state_peak_is_kept_and_a_resumed_run_keeps_the_larger_peaks(tmp_path: Path) -> None:
    state = tmp_path / "run"
    footprint = Footprint(state, root_pid=os.getpid())
    assert footprint.sample_device_state() == 0  # nothing written yet
    (state / "local" / "device-0").mkdir(parents=True)
    (state / "local" / "device-0" / "encoder.pt").write_bytes(b"x" * 1000)
    assert footprint.sample_device_state() == 1000
    (state / "local" / "device-0" / "encoder.pt").unlink()
    assert footprint.sample_device_state() == 0
    footprint.include({"device_state_bytes": 500, "peak_memory_bytes": 2**40})
    report = footprint.as_dict()
    assert report["device_state_bytes"] == 1000 and report["peak_memory_bytes"] == 2**40
    assert report["memory_root_pid"] == os.getpid()


def test_peak_memory_is_measured_while_running(tmp_path: Path) -> None:
    footprint = Footprint(tmp_path, interval=0.05, root_pid=os.getpid()).start()
    footprint.stop()
    assert footprint.as_dict()["peak_memory_bytes"] > 10 * 2**20  # this Python process with torch loaded


@pytest.mark.parametrize("keep", [False, True])
def test_release_removes_a_finished_topologys_state_unless_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: bool) -> None:
    from crlsc_fl.flower.server import release_device_state

    monkeypatch.setenv("CRLSC_STATE_DIR", str(tmp_path))
    for topology in ("local", "p2p"):
        (tmp_path / "42" / topology / "device-0").mkdir(parents=True)
        (tmp_path / "42" / topology / "device-0" / "encoder.pt").write_bytes(b"x" * 300)
    footprint = Footprint(tmp_path / "42", root_pid=os.getpid())
    release_device_state(from_flat({"scenario.keep-device-state": keep}), "42", "local", footprint)
    assert footprint.device_state_bytes == 600  # measured before removal
    assert (tmp_path / "42" / "local").exists() == keep
    assert (tmp_path / "42" / "p2p" / "device-0" / "encoder.pt").exists()
