"""SIGTERM ends a run like Ctrl-C; a signal during cleanup is delivered after it."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from crlsc_fl.launcher.signals import SignalGuard, deferred_signals


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
