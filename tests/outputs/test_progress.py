"""The run's progress line and each round's row in ``rounds.jsonl``."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from crlsc_fl.outputs.progress import RoundProgress
from crlsc_fl.outputs.run_dir import RunDirectory


def progress_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "flwr"]


def test_the_line_counts_replies_errors_and_the_mean_accuracy(caplog: pytest.LogCaptureFixture) -> None:
    progress = RoundProgress("quick/fedavg", 3, 10, 4, run_start=time.time() - 100)
    caplog.set_level(logging.INFO, logger="flwr")
    progress.line(progress.started)
    for failed, accuracy in [(False, 40.0), (True, None), (False, 50.0)]:
        progress.reply(failed, accuracy)
    progress.give_up(1)
    progress.line(progress.started + 12)
    first, second = progress_lines(caplog)
    assert first.startswith("[quick/fedavg] round 3/10: 0/4 devices done, 0 errors, 0 s in round, ")
    assert first.endswith("mean kNN top-1 n/a")
    assert second.startswith("[quick/fedavg] round 3/10: 3/4 devices done, 2 errors, 12 s in round, 100 s in run")
    assert second.endswith("mean kNN top-1 45.0%")


@pytest.mark.parametrize(("after", "last", "due"), [(0.0, False, False), (4.9, False, False), (5.01, False, True), (0.0, True, True)])
def test_a_line_is_due_every_few_seconds_and_at_the_end(after: float, last: bool, due: bool) -> None:
    progress = RoundProgress("s/t", 1, 1, 2, run_start=0.0, every=5.0)
    assert progress.due(progress.started + after, last) is due
    progress.line(progress.started + 7.0)  # the clock restarts at each line
    assert progress.due(progress.started + 7.0 + after, last) is due


@pytest.mark.parametrize("given_up", [0, 2])
def test_finish_writes_the_round_and_warns_about_devices_given_up(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                                   given_up: int) -> None:
    progress = RoundProgress("s/t", 2, 5, 3, run_start=0.0)
    progress.reply(True, None)
    progress.give_up(given_up)
    caplog.set_level(logging.WARNING, logger="flwr")
    progress.finish(RunDirectory(tmp_path), timeout=30.0)
    row = json.loads((tmp_path / "rounds.jsonl").read_text())
    assert {k: v for k, v in row.items() if k != "wall_seconds"} == {
        "label": "s/t", "round": 2, "devices": 3, "replies": 1, "errors": 1 + given_up}
    assert row["wall_seconds"] >= 0
    warnings = progress_lines(caplog)
    assert warnings == ([f"[s/t] round 2/5: no reply from {given_up} devices (timeout 30 s or node offline); counted as failed"]
                        if given_up else [])
    progress.finish(None, timeout=None)  # no run directory: nothing written
    assert len((tmp_path / "rounds.jsonl").read_text().splitlines()) == 1
