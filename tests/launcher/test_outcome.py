"""Exit codes, the results directory and the final line of ``crlsc-fl run`` / ``deploy``."""

from __future__ import annotations

from pathlib import Path

import pytest

from crlsc_fl.launcher.flower_cli import RunInfo, StreamResult
from crlsc_fl.launcher.outcome import ExitCode, Outcome, final_line, results_dir


def outcome(status: str | None, timed_out: bool = False, run_id: str | None = "1", details: str = "") -> Outcome:
    info = RunInfo(run_id or "9", status, details) if status else None
    return Outcome(StreamResult(0, run_id, timed_out, 1.0, 0.5), info)


@pytest.mark.parametrize(
    ("status", "timed_out", "code", "shown"),
    [
        ("finished:completed", False, 0, "finished:completed"),
        ("finished:failed", False, 1, "finished:failed"),
        ("finished:stopped", False, 1, "finished:stopped"),
        ("running", False, 1, "running"),
        (None, False, 1, "unknown"),
        ("running", True, 124, "timeout"),
        ("finished:completed", True, 124, "timeout"),  # --timeout wins: the run was cut short
    ],
)
def test_flower_status_maps_to_exit_code(status: str | None, timed_out: bool, code: int, shown: str) -> None:
    result = outcome(status, timed_out)
    assert result.exit_code == code and result.status == shown


def test_a_run_flwr_refused_is_not_started() -> None:
    refused = Outcome(StreamResult(2, None, False, 0.3, None), None)
    assert refused.status == "not started (flwr run exited 2)" and refused.exit_code == ExitCode.RUN_FAILED
    assert refused.run_id is None


def test_exit_codes_are_the_documented_numbers() -> None:
    assert {c.name: int(c) for c in ExitCode} == {
        "OK": 0, "RUN_FAILED": 1, "CONFIG": 2, "INFRA": 3, "TIMEOUT": 124, "INTERRUPTED": 130}


def test_final_line_names_run_status_details_results_and_logs(tmp_path: Path) -> None:
    home = tmp_path / ".flwr" / "sim-1"
    failed = outcome("finished:failed", details="Simulation failed with exception: boom")
    assert final_line(failed, tmp_path / "r", home) == (
        f"[crlsc] run 1: finished:failed (Simulation failed with exception: boom); results: {tmp_path / 'r'}; "
        f"flower logs: {home}")
    assert final_line(outcome("finished:completed", details="N/A"), None, home) == (
        f"[crlsc] run 1: finished:completed; results: no results directory; flower logs: {home}")
    assert final_line(None, None, home, error="interrupted", run_id="77") == (
        f"[crlsc] run 77: interrupted; results: no results directory; flower logs: {home}")
    assert final_line(None, None, home).startswith("[crlsc] run ?: not started;")


def test_results_dir_finds_the_run_under_its_scenario_or_any_other(tmp_path: Path) -> None:
    (tmp_path / "results" / "ci" / "11").mkdir(parents=True)
    (tmp_path / "results" / "renamed" / "22").mkdir(parents=True)
    assert results_dir(tmp_path, "results", "ci", "11") == tmp_path / "results" / "ci" / "11"
    assert results_dir(tmp_path, str(tmp_path / "results"), "ci", "22") == tmp_path / "results" / "renamed" / "22"
    assert results_dir(tmp_path, "results", "ci", "33") is None
    assert results_dir(tmp_path, "missing", "ci", "11") is None
    assert results_dir(tmp_path, "results", "ci", None) is None
