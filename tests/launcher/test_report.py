"""After a run: the summary decides failure, the device state is kept for --resume or cleaned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crlsc_fl.bookkeeping import run_state
from crlsc_fl.launcher.outcome import ExitCode
from crlsc_fl.launcher.report import clean_device_state, device_state_root, report_run, shorten


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
