"""Device state of whole runs, as the launcher sees it: a marker per run, sizes, cleaning.

Devices keep their state under ``<state root>/<run id>/`` (see
:mod:`crlsc_fl.device.device_store`); for 100 devices that is gigabytes. The launcher
writes ``<state root>/<run id>/run.json`` (status, results directory, launcher PID) when a
run starts and ends. An interrupted or failed run's state is kept for ``--resume`` and
listed at the end with its size and how to delete it. ``--clean`` removes the state of
runs that finished (``finished:completed``) or were abandoned (their results directory is
gone, so they cannot be resumed); it keeps resumable runs and directories without a
marker (runs still going, whose marker is written at their end, or runs not started by
this launcher), and lists them with their sizes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

MARKER = "run.json"
COMPLETED = "finished:completed"


def tree_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (files that vanish meanwhile count 0)."""
    total = 0
    for f in Path(path).rglob("*"):
        try:
            if f.is_file() and not f.is_symlink():
                total += f.stat().st_size
        except FileNotFoundError:  # replaced or removed by a device while we walk
            continue
    return total


def human(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError


def write_marker(root: Path, run_key: str, status: str, results: Path | None) -> None:
    folder = Path(root) / run_key
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"status": status, "results": str(results) if results else ""}
    (folder / MARKER).write_text(json.dumps(payload, indent=2))


@dataclass(frozen=True)
class RunState:
    run_key: str
    path: Path
    status: str  # from the marker; "unknown" without one
    results: str

    @property
    def resumable(self) -> bool:
        return bool(self.results) and (Path(self.results) / "config.json").is_file()

    def verdict(self) -> str:
        """``remove`` (finished or abandoned) or why it is kept."""
        if self.status == "unknown":
            return "kept: no marker (running, or not started by crlsc_fl.launch)"
        if self.status == COMPLETED:
            return "remove"
        return f"kept: {self.status}, resumable" if self.resumable else "remove"


def list_states(root: Path) -> list[RunState]:
    out = []
    for folder in sorted(p for p in Path(root).glob("*") if p.is_dir()):
        marker = folder / MARKER
        info = json.loads(marker.read_text()) if marker.is_file() else {}
        out.append(RunState(folder.name, folder, str(info.get("status", "unknown")), str(info.get("results", ""))))
    return out


def clean(root: Path) -> tuple[list[tuple[RunState, int]], list[tuple[RunState, int]]]:
    """Remove finished and abandoned runs' state; return (removed, kept) with sizes."""
    removed, kept = [], []
    for state in list_states(root):
        size = tree_size(state.path)
        if state.verdict() == "remove":
            shutil.rmtree(state.path, ignore_errors=True)
            removed.append((state, size))
        else:
            kept.append((state, size))
    return removed, kept
