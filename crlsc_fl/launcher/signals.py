"""Signals while Flower processes run: SIGTERM/SIGHUP end the run like Ctrl-C, and a signal
during cleanup waits until the cleanup is done."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

# What a user or a scheduler sends to stop us; all of them must reach our cleanup code.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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
