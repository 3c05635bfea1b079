"""A run's footprint, as ``summary.json`` reports it under ``footprint``.

- ``device_state_bytes``: the peak size on disk of the run's device state
  (``<state root>/<run id>/``), measured by the ServerApp after every round and before a
  topology's state is removed. Where devices keep their state on other machines
  (deployment with a per-node ``state-dir``) the ServerApp sees none of it and reports 0.
- ``peak_memory_bytes``: the peak summed PSS of the run's process tree
  (:class:`crlsc_fl.memory.MemorySampler`), sampled every few seconds from the ServerApp.
  The tree's root is the process named by ``$CRLSC_MEMORY_ROOT_PID`` (``crlsc_fl.launch``
  sets it to itself, so the tree holds the launcher, the SuperLink, the simulation, Ray and
  its actors, or the SuperNodes), else the ServerApp's own process.

A resumed run keeps the larger of its own and the interrupted run's peaks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from crlsc_fl.bookkeeping.run_state import tree_size
from crlsc_fl.environment import MEMORY_ROOT_ENV
from crlsc_fl.memory import MemorySampler

SAMPLE_SECONDS = 2.0


def memory_root(environ: Mapping[str, str] | None = None) -> int:
    """The root of the process tree to measure: ``$CRLSC_MEMORY_ROOT_PID`` if that process
    is alive, else this process."""
    value = (os.environ if environ is None else environ).get(MEMORY_ROOT_ENV, "")
    if value.isdigit() and psutil.pid_exists(int(value)):
        return int(value)
    return os.getpid()


class Footprint:
    def __init__(self, state_dir: Path, interval: float = SAMPLE_SECONDS, root_pid: int | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.memory = MemorySampler(memory_root() if root_pid is None else root_pid, interval)
        self.device_state_bytes = 0
        self.earlier_memory_bytes = 0  # peak of the interrupted run this one resumes

    def start(self) -> Footprint:
        self.memory.start()
        return self

    def stop(self) -> None:
        self.memory.stop()

    def sample_device_state(self, *_: Any) -> int:
        """Measure the device state on disk now; returns its size (the peak is kept)."""
        size = tree_size(self.state_dir) if self.state_dir.is_dir() else 0
        self.device_state_bytes = max(self.device_state_bytes, size)
        return size

    def include(self, earlier: Mapping[str, Any]) -> None:
        """Fold in the ``footprint`` of the run being resumed."""
        self.device_state_bytes = max(self.device_state_bytes, int(earlier.get("device_state_bytes", 0)))
        self.earlier_memory_bytes = max(self.earlier_memory_bytes, int(earlier.get("peak_memory_bytes", 0)))

    def as_dict(self) -> dict[str, Any]:
        return {
            "device_state_bytes": self.device_state_bytes,
            "peak_memory_bytes": max(self.memory.peak_tree, self.earlier_memory_bytes),
            "memory_root_pid": self.memory.root_pid,
            "memory_sample_seconds": self.memory.interval,
        }
