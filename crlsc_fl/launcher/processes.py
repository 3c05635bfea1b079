"""The launcher's processes: starting Flower's, waiting for things, stopping exactly what they
caused, and signals meanwhile.

* :class:`Supervisor` (built on psutil). Each started process is a session leader
  (``start_new_session``). The SuperLink starts ``flower-superexec`` in a new session, which
  starts ``flwr-simulation`` and Ray; SIGTERM to the SuperLink alone leaves ``flwr-simulation``
  running ~20 s and Ray's ``DashboardAgent`` / ``RuntimeEnvAgent`` orphaned for good (they
  ignore SIGTERM). So the supervisor remembers every descendant of what it started, and every
  process living in a session one of them leads, while their parents are still alive (a
  background scan), and :meth:`Supervisor.stop` ends all of them: SIGTERM, then SIGKILL for
  what ignores it.
* :func:`poll_until`, the launcher's one way to wait. Every wait (the SuperLink's ``/health``,
  SuperNodes coming online, a run's final status, processes exiting) is a probe called at an
  interval until its answer says "done" or a timeout passes. Keeping that loop in one place
  keeps deadlines, the last check at the deadline and the timeout message the same everywhere.
* Signals while Flower processes run (:class:`SignalGuard`, :func:`deferred_signals`):
  SIGTERM/SIGHUP end the run like Ctrl-C, and a signal during cleanup waits until the cleanup
  is done.
* :class:`FlowerError`, the one error type of the launcher's Flower side (here, at the bottom
  of the launcher, so that every module can raise it).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import psutil

T = TypeVar("T")

# What a user or a scheduler sends to stop us; all of them must reach our cleanup code.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
SETTLE_INTERVAL = 0.2  # seconds between checks while processes are exiting
ESCALATION_GRACE = 3.0  # seconds the leftovers get after the second SIGTERM and after SIGKILL


class FlowerError(RuntimeError):
    """Flower infrastructure could not be started or queried; the message says what and where."""


class PollTimeout(TimeoutError):
    """:func:`poll_until` gave up. ``last`` is the probe's last answer (a partial result
    such as "2 of 3 SuperNodes online" or the processes still running)."""

    def __init__(self, what: str, timeout: float, last: object) -> None:
        super().__init__(f"gave up waiting for {what} after {timeout:g} s")
        self.what = what
        self.timeout = timeout
        self.last = last


def poll_until(
    probe: Callable[[], T],
    *,
    timeout: float,
    interval: float,
    what: str,
    done: Callable[[T], bool] = bool,
) -> T:
    """Call ``probe`` every ``interval`` seconds until ``done(answer)``; return that answer.

    ``probe`` runs at least once (also with ``timeout=0``) and once more at the deadline,
    so a slow last interval does not cost a false timeout. A probe raises to say that
    waiting is pointless (the awaited process died); that exception propagates unchanged.
    On timeout :class:`PollTimeout` names ``what`` was awaited and keeps the last answer.
    """
    if not (timeout >= 0 and math.isfinite(timeout)):
        raise ValueError(f"poll_until timeout must be a finite number of seconds >= 0, got {timeout!r} ({what})")
    if not (interval > 0 and math.isfinite(interval)):
        raise ValueError(f"poll_until interval must be a finite number of seconds > 0, got {interval!r} ({what})")
    deadline = time.monotonic() + timeout
    while True:
        answer = probe()
        if done(answer):
            return answer
        left = deadline - time.monotonic()
        if left <= 0:
            raise PollTimeout(what, timeout, answer)
        time.sleep(min(interval, left))


def in_main_thread() -> bool:
    """Python installs signal handlers only from the main thread (tests call us from others)."""
    return threading.current_thread() is threading.main_thread()


@dataclass
class SignalGuard:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt so ``finally`` blocks stop our processes."""

    previous: dict[int, Any] = field(default_factory=dict)

    def __enter__(self) -> SignalGuard:
        if in_main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):
                self.previous[sig] = signal.signal(sig, self._raise)
        return self

    @staticmethod
    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Record SIGINT/SIGTERM/SIGHUP during the block; raise KeyboardInterrupt after it if any came.

    (Blocking with ``pthread_sigmask`` is not enough: the kernel would hand the signal to
    another thread and Python would still raise in the main thread.) No-op outside the main thread.
    """
    if not in_main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum)) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise KeyboardInterrupt(f"signal {received[0]} during cleanup")


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
