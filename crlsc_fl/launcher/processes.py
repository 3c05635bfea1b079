"""Start Flower's processes and stop exactly what they caused (built on psutil).

Each started process is a session leader (``start_new_session``). The SuperLink starts
``flower-superexec`` in a new session, which starts ``flwr-simulation`` and Ray; SIGTERM to
the SuperLink alone leaves ``flwr-simulation`` running ~20 s and Ray's ``DashboardAgent`` /
``RuntimeEnvAgent`` orphaned for good (they ignore SIGTERM). So :class:`Supervisor`
remembers every descendant of what it started, and every process living in a session one
of them leads, while their parents are still alive (a background scan), and
:meth:`Supervisor.stop` ends all of them: SIGTERM, then SIGKILL for what ignores it.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import psutil

from crlsc_fl.launcher.errors import FlowerError
from crlsc_fl.launcher.polling import PollTimeout, poll_until

SETTLE_INTERVAL = 0.2  # seconds between checks while processes are exiting
ESCALATION_GRACE = 3.0  # seconds the leftovers get after the second SIGTERM and after SIGKILL


def is_running(proc: psutil.Process) -> bool:
    """True while this very process runs (not another one that reuses its pid); zombies count as gone."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def describe(proc: psutil.Process, width: int = 100) -> str:
    """``"<pid>: <command line>"`` for messages ('' as command line once the process is gone)."""
    try:
        command = " ".join(proc.cmdline())
    except psutil.Error:
        command = ""
    return f"{proc.pid}: {command[:width]}"


def session_id(pid: int) -> int | None:
    """The session a process belongs to, or None if it is gone."""
    try:
        return os.getsid(pid)
    except OSError:
        return None


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file ('' if missing)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Supervisor:
    """Starts processes as session leaders and stops them and everything they caused.

    Ownership rule: a process is ours if we started it, if it descends from a process of
    ours, or if it lives in a session led by a process of ours and started after this
    Python process. A background thread re-scans every ``scan_interval`` seconds so that
    processes are remembered before their parents die and they get re-parented to init.
    """

    log_dir: Path
    scan_interval: float = 1.0
    started: list[tuple[str, psutil.Popen]] = field(default_factory=list)
    tracked: dict[int, psutil.Process] = field(default_factory=dict)  # pid -> that very process
    sessions: set[int] = field(default_factory=set)  # session ids led by processes of ours
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _since: float = field(init=False)  # older processes in "our" sessions are not ours

    def __post_init__(self) -> None:
        if not self.scan_interval > 0:
            raise ValueError(f"scan_interval must be > 0 seconds, got {self.scan_interval!r}")
        self._since = psutil.Process().create_time()

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> psutil.Popen:
        """Start ``argv`` in its own session, output to ``<log_dir>/<name>.log``."""
        log = self.log_path(name).open("ab")
        try:
            proc = psutil.Popen(
                list(argv), env=dict(env), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.log_dir,
            )
        except OSError as err:
            raise FlowerError(f"cannot start {name} ({argv[0]}): {err}") from err
        finally:
            log.close()  # the child holds its own copy
        with self._lock:
            self.started.append((name, proc))
            self.tracked[proc.pid] = proc
            self.sessions.add(proc.pid)
        if self._thread is None:
            self._thread = threading.Thread(target=self._scan_loop, name="flwr-supervisor", daemon=True)
            self._thread.start()
        return proc

    def log_path(self, name: str) -> Path:
        """Where the output of the process started as ``name`` goes."""
        return self.log_dir / f"{name}.log"

    def exited(self) -> tuple[str, psutil.Popen] | None:
        """The first started process that has exited (name, process), else None."""
        return next(((name, proc) for name, proc in self.started if proc.poll() is not None), None)

    def _scan_loop(self) -> None:
        while not self._stop.wait(self.scan_interval):
            self.scan()

    def scan(self) -> None:
        """Remember every current descendant / same-session process of ours (until nothing new turns up)."""
        while self._remember(self._candidates()):
            pass

    def _candidates(self) -> list[psutil.Process]:
        with self._lock:
            known = {pid: proc for pid, proc in self.tracked.items() if is_running(proc)}
            sessions = set(self.sessions)
        found: list[psutil.Process] = []
        for proc in known.values():
            try:
                if proc.ppid() in known:
                    continue  # its ancestor's children(recursive=True) lists it and its descendants
                found += proc.children(recursive=True)
            except psutil.NoSuchProcess:
                continue  # exited meanwhile; its orphans are found through their session
        for proc in psutil.process_iter():
            try:
                if session_id(proc.pid) in sessions and proc.create_time() >= self._since:
                    found.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue  # gone meanwhile, or somebody else's
        return found

    def _remember(self, found: Iterable[psutil.Process]) -> bool:
        """Track ``found``; True if a process or a session was new."""
        changed = False
        with self._lock:
            for proc in found:
                if self.tracked.get(proc.pid) != proc:  # new, or a new process reusing a dead one's pid
                    self.tracked[proc.pid] = proc
                    changed = True
                if session_id(proc.pid) == proc.pid and proc.pid not in self.sessions:
                    self.sessions.add(proc.pid)
                    changed = True
        return changed

    def running(self) -> list[psutil.Process]:
        """Tracked processes still running."""
        with self._lock:
            procs = list(self.tracked.values())
        return [proc for proc in procs if is_running(proc)]

    def alive(self) -> list[int]:
        """Pids of the tracked processes still running (zombies count as gone)."""
        return [proc.pid for proc in self.running()]

    def all_pids(self) -> list[int]:
        """Every pid ever tracked (for tests: all must be gone after :meth:`stop`)."""
        with self._lock:
            return sorted(self.tracked)

    def _wait_gone(self, procs: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
        """Wait up to ``timeout`` s for ``procs`` to exit; return those still running."""

        def still_running() -> list[psutil.Process]:
            self.scan()  # what they start while shutting down is ours too
            _, left = psutil.wait_procs(procs, timeout=0)  # reaps the ones we started
            return [proc for proc in left if is_running(proc)]

        try:
            return poll_until(still_running, timeout=timeout, interval=SETTLE_INTERVAL,
                              what=f"{len(procs)} processes to exit", done=lambda left: not left)
        except PollTimeout as late:
            return list(cast(Iterable[psutil.Process], late.last))

    @staticmethod
    def _send(procs: Iterable[psutil.Process], action: Callable[[psutil.Process], None]) -> None:
        for proc in procs:
            try:
                action(proc)  # psutil refuses to signal a process that reused the pid
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass

    def stop(self, grace: float = 10.0) -> list[int]:
        """Stop everything we caused; return pids that survived SIGKILL (should be empty).

        Order: SIGTERM the started processes (newest first, e.g. SuperNodes before the
        SuperLink) and give them ``grace`` seconds to shut down their children cleanly; then
        SIGTERM and finally SIGKILL whatever tracked process is left (Ray agents ignore SIGTERM).
        """
        self.scan()
        roots = [proc for _, proc in reversed(self.started) if is_running(proc)]
        self._send(roots, psutil.Process.terminate)
        self._wait_gone(roots, grace)
        left = self.running()
        for action in (psutil.Process.terminate, psutil.Process.kill):
            if left:
                self._send(left, action)
                left = self._wait_gone(left, ESCALATION_GRACE)
        self._stop.set()
        for _, proc in self.started:  # collect exit codes, leave no zombie of ours
            try:
                proc.wait(timeout=1)
            except psutil.TimeoutExpired:
                pass
        return [proc.pid for proc in left]
