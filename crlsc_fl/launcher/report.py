"""After a run: the summary's status and first errors, and the devices' state on this machine
(kept for ``--resume`` unless the run completed; ``--clean`` removes what is finished)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from crlsc_fl.environment import STATE_DIR_ENV
from crlsc_fl.launcher.outcome import ExitCode

ERROR_WIDTH = 300  # characters of one device error printed


def device_state_root(env: Mapping[str, str]) -> Path:
    """Where the devices of a run started with ``env`` keep their state."""
    from crlsc_fl.data.paths import state_root

    return Path(env[STATE_DIR_ENV]) if env.get(STATE_DIR_ENV) else state_root()


def shorten(text: str, limit: int = ERROR_WIDTH) -> str:
    """``text`` cut to ``limit`` characters, with ``...`` where it was cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def report_summary(summary_file: Path, code: int) -> int:
    """Settle a summary left ``running`` (the ServerApp was stopped from outside), print its
    failure and first errors; return the exit code (a ``failed`` summary fails the command)."""
    from crlsc_fl.bookkeeping.failures import describe

    summary = json.loads(summary_file.read_text())
    if summary.get("status") == "running":
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
