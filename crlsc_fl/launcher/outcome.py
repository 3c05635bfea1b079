"""What one ``flwr run`` came to: the exit codes of ``crlsc-fl run`` / ``deploy``, the
results directory, and the summary line both print last."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from crlsc_fl.launcher.flower_cli import RunInfo, StreamResult


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
