"""What a run came to: exit codes, the results directory and the final line of ``crlsc-fl run`` /
``deploy``; after the run the summary decides failure, the device state is kept for --resume or cleaned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crlsc_fl.bookkeeping import run_state
from crlsc_fl.launcher.flower_cli import RunInfo, StreamResult
from crlsc_fl.launcher.report import (
    ExitCode,
    Outcome,
    clean_device_state,
    device_state_root,
    final_line,
    report_run,
    report_summary,
    results_dir,
    shorten,
)


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


def write_summary(results: Path, **summary: object) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    (results / "summary.json").write_text(json.dumps(summary))
    return results / "summary.json"


@pytest.mark.parametrize(
    ("summary_status", "code", "expected_code", "stored"),
    [
        ("completed", ExitCode.OK, ExitCode.OK, "completed"),
        ("failed", ExitCode.OK, ExitCode.RUN_FAILED, "failed"),  # Flower completed, our summary did not
        ("running", ExitCode.INTERRUPTED, ExitCode.INTERRUPTED, "interrupted"),  # stopped from outside
        ("running", ExitCode.TIMEOUT, ExitCode.TIMEOUT, "failed"),
    ],
)
def test_summary_status_settles_the_exit_code(tmp_path: Path, summary_status: str, code: ExitCode,
                                              expected_code: ExitCode, stored: str) -> None:
    summary = write_summary(tmp_path / "run", status=summary_status)
    assert report_run(tmp_path / "run", code, "status", tmp_path / "state", None) == expected_code
    assert json.loads(summary.read_text())["status"] == stored


def test_failed_run_prints_failure_and_first_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    error = {"device": 2, "topology": "p2p", "round": 2, "error_type": "NoReply", "error_message": "x" * 1000}
    write_summary(tmp_path / "run", status="failed", failure="only 1 of 2 devices", errors=1, first_errors=[error])
    assert report_run(tmp_path / "run", ExitCode.OK, "finished:completed", tmp_path / "state", None) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[crlsc] run failed: only 1 of 2 devices"
    assert out[1] == "[crlsc] 1 failed device calls; the first:"
    assert out[2].startswith("[crlsc]   device 2 (p2p, round 2): NoReply") and out[2].endswith("...")
    assert len(out[2]) == len("[crlsc]   ") + 300


def test_device_state_of_an_unfinished_run_is_kept_with_resume_and_delete_hints(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state, results = tmp_path / "state", tmp_path / "results" / "ci" / "5"
    (state / "5" / "device-0").mkdir(parents=True)
    (state / "5" / "device-0" / "enc.pt").write_bytes(b"0" * 2048)
    write_summary(results, status="running")
    assert report_run(results, ExitCode.INTERRUPTED, "interrupted", state, "5") == 130
    out = capsys.readouterr().out
    assert f"device state of run 5 kept for --resume: {state / '5'} (2.1 KB)" in out  # the encoder and run.json
    assert f"resume: python -m crlsc_fl.launch --resume {results}" in out and f"rm -rf {state / '5'}" in out
    assert json.loads((state / "5" / run_state.MARKER).read_text()) == {"status": "interrupted", "results": str(results)}


def test_completed_run_marks_its_state_completed_and_clean_removes_it(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    (state / "5").mkdir(parents=True)
    (state / "6").mkdir()  # no marker: a run still going, kept
    assert report_run(None, ExitCode.OK, "finished:completed", state, "5") == 0
    assert "kept for --resume" not in capsys.readouterr().out
    assert clean_device_state(state) == 0
    out = capsys.readouterr().out
    assert f"removed {state / '5'}" in out and f"kept {state / '6'}" in out and not (state / "5").exists()
    assert out.splitlines()[-1].startswith(f"[crlsc] device state root {state}: 1 runs removed")


def test_state_root_follows_the_state_dir_variable(tmp_path: Path) -> None:
    assert device_state_root({"CRLSC_STATE_DIR": str(tmp_path)}) == tmp_path
    assert device_state_root({}) != tmp_path


@pytest.mark.parametrize(("text", "limit", "expected"), [("abc", 3, "abc"), ("abcdef", 5, "ab..."), ("", 4, "")])
def test_shorten(text: str, limit: int, expected: str) -> None:
    assert shorten(text, limit) == expected


@pytest.mark.parametrize("status, code, settled, exit_code", [
    ("running", ExitCode.INTERRUPTED, "interrupted", ExitCode.INTERRUPTED),
    ("failed", ExitCode.INTERRUPTED, "interrupted", ExitCode.INTERRUPTED),  # a round the stop cut short
    ("running", ExitCode.OK, "failed", ExitCode.RUN_FAILED),
    ("failed", ExitCode.OK, "failed", ExitCode.RUN_FAILED),
    ("completed", ExitCode.OK, "completed", ExitCode.OK),
])
def test_report_summary_settles_the_status(tmp_path: Path, status: str, code: int, settled: str, exit_code: int) -> None:
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"status": status, "failure": "RoundFailedError: lost actors"}))
    assert report_summary(summary, code) == exit_code
    assert json.loads(summary.read_text())["status"] == settled
