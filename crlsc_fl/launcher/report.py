"""What a run came to: the exit codes of ``crlsc-fl run`` / ``deploy``, the results directory,
the final line both print last; then the summary's status and first errors, and the devices'
state on this machine (kept for ``--resume`` unless the run completed; ``--clean`` removes what
is finished)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from crlsc_fl import environment
from crlsc_fl.launcher.flower_cli import RunInfo, StreamResult

ERROR_WIDTH = 300  # characters of one device error printed


class ExitCode(IntEnum):
    """Exit codes shared by the simulation launcher and the deployment runner."""

    OK = 0  # finished:completed
    RUN_FAILED = 1  # finished:failed / stopped / unknown, or the summary says failed
    CONFIG = 2  # invalid scenario, overrides or options: nothing was started
    INFRA = 3  # Flower could not be started or queried, or a process survived SIGKILL
    TIMEOUT = 124  # --timeout passed (like timeout(1))
    INTERRUPTED = 130  # Ctrl-C, SIGTERM, SIGHUP (128 + SIGINT)


@dataclass
class Outcome:
    """What happened to one ``flwr run``."""

    stream: StreamResult
    info: RunInfo | None

    @property
    def run_id(self) -> str | None:
        """The run id (from the output, else from ``flwr ls``)."""
        return self.stream.run_id or (self.info.run_id if self.info else None)

    @property
    def status(self) -> str:
        """Final Flower status, or ``timeout`` / ``unknown`` / ``not started (...)``."""
        if self.stream.timed_out:
            return "timeout"
        if self.info is None and self.stream.run_id is None:
            return f"not started (flwr run exited {self.stream.returncode})"
        return self.info.status if self.info else "unknown"

    @property
    def exit_code(self) -> ExitCode:
        """OK only if Flower reports ``finished:completed``."""
        if self.stream.timed_out:
            return ExitCode.TIMEOUT
        return ExitCode.OK if self.info is not None and self.info.succeeded else ExitCode.RUN_FAILED


def results_dir(project: Path, results_root: str, scenario_name: str, run_id: str | None) -> Path | None:
    """``<project>/<results-root>/<scenario>/<run-id>`` if it exists, else any ``*/<run-id>`` there."""
    if run_id is None:
        return None
    from crlsc_fl.outputs.run_dir import results_base  # lazy: the app's code, only once a run ended

    base = results_base(results_root, project)
    expected = base / scenario_name / run_id
    if expected.is_dir():
        return expected
    hits = sorted(base.glob(f"*/{run_id}")) if base.is_dir() else []
    return hits[0] if hits else None


def final_line(
    outcome: Outcome | None, results: Path | None, home: Path, error: str | None = None, run_id: str | None = None
) -> str:
    """The one summary line both commands print last."""
    rid = (outcome.run_id if outcome else None) or run_id
    status = error or (outcome.status if outcome else "not started")
    details = ""
    if outcome and outcome.info and outcome.info.details not in ("", "N/A"):
        details = f" ({outcome.info.details})"
    where = str(results) if results else "no results directory"
    return f"[crlsc] run {rid or '?'}: {status}{details}; results: {where}; flower logs: {home}"


def device_state_root(env: Mapping[str, str]) -> Path:
    """Where the devices of a run started with ``env`` keep their state."""
    from crlsc_fl.data.paths import state_root

    return environment.state_dir(env) or state_root()


def shorten(text: str, limit: int = ERROR_WIDTH) -> str:
    """``text`` cut to ``limit`` characters, with ``...`` where it was cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def report_summary(summary_file: Path, code: int) -> int:
    """Settle a summary left ``running`` (the ServerApp was stopped from outside), or ``failed``
    by a stop the launcher was asked for (``interrupted``), print its
    failure and first errors; return the exit code (a ``failed`` summary fails the command)."""
    from crlsc_fl.bookkeeping.failures import describe

    summary = json.loads(summary_file.read_text())
    # a round the stop cut short fails in the ServerApp (lost Ray actors): that run was interrupted
    if summary.get("status") == "running" or (code == ExitCode.INTERRUPTED and summary.get("status") == "failed"):
        summary["status"] = "interrupted" if code == ExitCode.INTERRUPTED else "failed"
        summary_file.write_text(json.dumps(summary, indent=2))
    if summary.get("status") == "failed":
        if code == ExitCode.OK:
            code = ExitCode.RUN_FAILED
        print(f"[crlsc] run failed: {summary.get('failure', '')}", flush=True)
    if summary.get("first_errors"):
        print(f"[crlsc] {summary.get('errors')} failed device calls; the first:", flush=True)
        for error in summary["first_errors"]:
            print(f"[crlsc]   {shorten(describe(error))}", flush=True)
    return code


def report_run(results: Path | None, code: int, outcome_status: str, state_root: Path, run_key: str | None) -> int:
    """After the run: its summary's status and first errors, its device state; returns the exit code."""
    from crlsc_fl.bookkeeping import run_state

    summary_file = results / "summary.json" if results else None
    if summary_file is not None and summary_file.is_file():
        code = report_summary(summary_file, code)
    if run_key and (state_root / run_key).is_dir():  # devices saved state on this machine
        status = run_state.COMPLETED if code == ExitCode.OK else outcome_status
        run_state.write_marker(state_root, run_key, status, results)
        path = state_root / run_key
        if code != ExitCode.OK:
            print(f"[crlsc] device state of run {run_key} kept for --resume: {path} "
                  f"({run_state.human(run_state.tree_size(path))})", flush=True)
            if results is not None:
                print(f"[crlsc]   resume: python -m crlsc_fl.launch --resume {results}", flush=True)
            print(f"[crlsc]   delete: rm -rf {path}   (or: python -m crlsc_fl.launch --clean, once abandoned)", flush=True)
    return code


def clean_device_state(root: Path) -> int:
    """``--clean``: remove finished/abandoned runs' device state, list what is kept."""
    from crlsc_fl.bookkeeping import run_state

    removed, kept = run_state.clean(root)
    for state, size in removed:
        print(f"[crlsc] removed {state.path} ({run_state.human(size)}, {state.status})")
    for state, size in kept:
        print(f"[crlsc] kept {state.path} ({run_state.human(size)}; {state.verdict()[len('kept: '):]}); delete: rm -rf {state.path}")
    print(f"[crlsc] device state root {root}: {len(removed)} runs removed "
          f"({run_state.human(sum(size for _, size in removed))}), {len(kept)} kept")
    return ExitCode.OK
