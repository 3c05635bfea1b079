"""Memory of a process tree, sampled in a background thread (psutil).

The measure is the summed **PSS** (proportional set size) of a root process and all its
descendants: pages shared by several processes (Ray's object store, libraries) are split
among them, so the sum counts them once, unlike summed RSS. Where PSS is not available
(not Linux) RSS stands in. The sampler also keeps the system-wide used memory (total -
available) above its value at creation, which includes the page cache of files written.

Reading PSS walks each process's memory map (``/proc/<pid>/smaps_rollup``): about 10% of
a core at one sample per second for the ~20 processes of a Flower simulation with Ray, so
the default interval is 2 s. A peak shorter than the interval can be missed.

    with MemorySampler(root_pid) as sampler:
        ...
    sampler.peak_tree  # bytes
"""

from __future__ import annotations

import os
import threading
import time
from types import TracebackType

import psutil


def process_memory(process: psutil.Process) -> int:
    """PSS of one process in bytes (RSS where PSS is not reported); 0 if it is gone."""
    try:
        info = process.memory_full_info()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return 0
    return int(getattr(info, "pss", info.rss))


def tree_memory(root_pid: int) -> int:
    """Summed PSS of ``root_pid`` and all its descendants, in bytes (0 if it is gone)."""
    try:
        root = psutil.Process(root_pid)
        processes = [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return 0
    return sum(process_memory(p) for p in processes)


def physical_memory() -> int:
    """Memory installed in this machine, in bytes (for reports: "16 cores, 128 GiB")."""
    return int(psutil.virtual_memory().total)


def system_used() -> int:
    """Memory in use system-wide (total - available), in bytes."""
    vm = psutil.virtual_memory()
    return int(vm.total - vm.available)


class MemorySampler:
    """Samples every ``interval`` seconds until stopped: peak tree PSS (``peak_tree``), peak
    system-wide use above the baseline (``peak_system``) and, if ``keep_series``, a series
    of (seconds, system GiB, tree GiB)."""

    def __init__(self, root_pid: int | None = None, interval: float = 2.0, keep_series: bool = False) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        self.root_pid = os.getpid() if root_pid is None else root_pid
        self.interval, self.keep_series = interval, keep_series
        self.baseline = system_used()
        self.peak_tree = 0
        self.peak_system = 0
        self.series: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._start = time.monotonic()

    def sample(self) -> None:
        """Take one sample now (also called by the thread)."""
        tree, system = tree_memory(self.root_pid), system_used() - self.baseline
        self.peak_tree, self.peak_system = max(self.peak_tree, tree), max(self.peak_system, system)
        if self.keep_series:
            self.series.append((round(time.monotonic() - self._start, 1), round(system / 2**30, 2), round(tree / 2**30, 2)))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def start(self) -> MemorySampler:
        self._start = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling (after one last sample); safe to call twice."""
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
            self.sample()

    def __enter__(self) -> MemorySampler:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
