"""The launcher's processes: the psutil supervisor stops children and grandchildren (also ones
ignoring SIGTERM or in their own session) and nothing it did not cause; :func:`poll_until`, the
one wait loop; SIGTERM ends a run like Ctrl-C, a signal during cleanup is delivered after it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from crlsc_fl.launcher.processes import FlowerError, PollTimeout, SignalGuard, Supervisor, deferred_signals, describe, is_running, poll_until, tail

STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)          # like Ray's agents: needs SIGKILL
subprocess.Popen(["setsid", "sleep", "300"])              # a grandchild in its own session
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
print("ready", flush=True)
time.sleep(300)
"""

POLITE = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
print("ready", flush=True)
time.sleep(300)
"""


def started_tree(sup: Supervisor, name: str, code: str, size: int) -> psutil.Popen:
    """Start ``code`` under ``sup``; wait until it is ready and ``size`` processes are tracked."""
    proc = sup.start(name, [sys.executable, "-c", code], dict(os.environ))
    poll_until(lambda: "ready" in sup.log_path(name).read_text(), timeout=30, interval=0.05, what=f"{name} to start")

    def tracked_running() -> int:
        sup.scan()
        return len(sup.alive())

    poll_until(tracked_running, timeout=30, interval=0.05, what=f"{size} processes of {name}", done=lambda n: n >= size)
    return proc


@pytest.fixture
def bystander() -> psutil.Popen:
    """A process not started through the supervisor: it must survive every stop()."""
    proc = psutil.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.parametrize(("code", "size", "sessions"), [(STUBBORN, 3, 2), (POLITE, 2, 1)], ids=["stubborn", "polite"])
def test_stop_ends_children_and_grandchildren_only(tmp_path: Path, bystander: psutil.Popen, code: str, size: int,
                                                   sessions: int) -> None:
    sup = Supervisor(tmp_path, scan_interval=0.1)
    try:
        root = started_tree(sup, "tree", code, size)
        tree = sup.running()
        assert len(tree) == size, [describe(p) for p in tree]
        assert len(sup.sessions) == sessions  # ours (+ the setsid grandchild's)
        assert bystander.pid not in sup.all_pids()
        assert sup.stop(grace=1.0) == []
        assert root.poll() is not None and sup.alive() == []
        assert not any(is_running(p) for p in tree)
        assert is_running(bystander)
    finally:
        for proc in sup.running():
            proc.kill()


def test_started_processes_get_sigterm_to_clean_up_and_their_logs_are_kept(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, scan_interval=0.1)
    order = tmp_path / "order"
    on_term = ("import signal, sys, time\n"
               "def bye(*_):\n    open({path!r}, 'a').write({name!r} + '\\n'); sys.exit(0)\n"
               "signal.signal(signal.SIGTERM, bye)\nprint('ready', flush=True)\ntime.sleep(300)\n")
    try:
        for name in ("first", "second"):
            started_tree(sup, name, on_term.format(path=str(order), name=name), 1)
        assert sup.stop(grace=5.0) == []
        assert sorted(order.read_text().split()) == ["first", "second"]  # both ran their SIGTERM handler
        assert "ready" in tail(sup.log_path("first")) and "ready" in tail(sup.log_path("second"))
        assert [name for name, _ in sup.started] == ["first", "second"]
    finally:
        for proc in sup.running():
            proc.kill()


def test_an_exited_process_is_reported_with_its_exit_code(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    try:
        proc = sup.start("quitter", [sys.executable, "-c", "import sys; print('bye'); sys.exit(7)"], dict(os.environ))
        name, exited = poll_until(sup.exited, timeout=30, interval=0.05, what="quitter to exit",
                                  done=lambda e: e is not None)
        assert name == "quitter" and exited is proc and proc.returncode == 7
        assert not is_running(proc)
        assert tail(sup.log_path("quitter")) == "bye"
    finally:
        assert sup.stop(grace=1.0) == []


def test_a_missing_program_is_a_flower_error_naming_it(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    with pytest.raises(FlowerError, match=r"cannot start superlink \(no-such-flower-binary\)"):
        sup.start("superlink", ["no-such-flower-binary"], dict(os.environ))


def test_tail_of_a_missing_log_is_empty_and_bad_scan_interval_is_refused(tmp_path: Path) -> None:
    assert tail(tmp_path / "nothing.log") == ""
    (tmp_path / "long.log").write_text("".join(f"line {i}\n" for i in range(40)))
    assert tail(tmp_path / "long.log", lines=2) == "line 38\nline 39"
    with pytest.raises(ValueError, match=r"scan_interval must be > 0 seconds, got 0"):
        Supervisor(tmp_path, scan_interval=0)


def test_describe_names_pid_and_command_line() -> None:
    proc = psutil.Popen([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(30)"],
                        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"  # exec'd: the command line is the child's own
        assert describe(proc).startswith(f"{proc.pid}: {sys.executable} -c import time")
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert not is_running(proc)
    assert describe(proc) == f"{proc.pid}: "


def test_polling_stops_at_the_first_answer_that_is_done() -> None:
    answers = iter([0, 1, 2, 3, 4, 5])
    calls: list[int] = []

    def probe() -> int:
        calls.append(value := next(answers))
        return value

    assert poll_until(probe, timeout=60, interval=0.001, what="three nodes", done=lambda n: n >= 3) == 3
    assert calls == [0, 1, 2, 3]  # not called again once done


def test_a_true_answer_on_the_first_call_returns_at_once_even_with_zero_timeout() -> None:
    assert poll_until(lambda: "up", timeout=0, interval=1, what="the link") == "up"


def test_timeout_raises_naming_what_was_awaited_and_keeps_the_last_answer() -> None:
    answers = iter(range(1000))
    with pytest.raises(PollTimeout, match=r"gave up waiting for 3 SuperNodes to connect after 0.05 s") as caught:
        poll_until(lambda: next(answers), timeout=0.05, interval=0.01, what="3 SuperNodes to connect",
                   done=lambda n: n < 0)
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.last >= 1  # called again at (or before) the deadline, after the first answer
    assert caught.value.what == "3 SuperNodes to connect"


def test_an_exception_of_the_probe_ends_the_wait() -> None:
    calls = []

    def probe() -> bool:
        calls.append(1)
        raise RuntimeError("superlink exited with code 1")

    with pytest.raises(RuntimeError, match="exited with code 1"):
        poll_until(probe, timeout=60, interval=0.001, what="the SuperLink")
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("timeout", "interval", "message"),
    [
        (-1, 0.1, r"timeout must be a finite number of seconds >= 0, got -1 \(x\)"),
        (float("inf"), 0.1, r"timeout must be .* got inf"),
        (1, 0, r"interval must be a finite number of seconds > 0, got 0 \(x\)"),
        (1, float("nan"), r"interval must be .* got nan"),
    ],
)
def test_bad_timeout_or_interval_is_refused_with_the_value(timeout: float, interval: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        poll_until(lambda: True, timeout=timeout, interval=interval, what="x")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_guard_turns_sigterm_and_sighup_into_keyboard_interrupt(sig: int) -> None:
    before = signal.getsignal(sig)
    with pytest.raises(KeyboardInterrupt, match=f"signal {int(sig)}"):
        with SignalGuard():
            os.kill(os.getpid(), sig)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
    assert signal.getsignal(sig) is before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_cleanup_is_raised_after_the_cleanup(sig: int) -> None:
    done = []
    with pytest.raises(KeyboardInterrupt, match=f"signal {int(sig)} during cleanup"):
        with deferred_signals():
            os.kill(os.getpid(), sig)
            for _ in range(1000):
                pass
            done.append("cleanup finished")
    assert done == ["cleanup finished"]


def test_no_signal_no_interrupt_and_outside_the_main_thread_nothing_changes() -> None:
    with deferred_signals():
        pass
    seen: list[object] = []

    def worker() -> None:
        with SignalGuard() as guard, deferred_signals():
            seen.append(guard.previous)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [{}]
