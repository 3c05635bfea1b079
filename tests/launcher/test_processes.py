"""The psutil supervisor: it stops children and grandchildren (also ones ignoring SIGTERM or in
their own session) and nothing it did not cause."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from crlsc_fl.launcher.errors import FlowerError
from crlsc_fl.launcher.polling import poll_until
from crlsc_fl.launcher.processes import Supervisor, describe, is_running, tail

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
