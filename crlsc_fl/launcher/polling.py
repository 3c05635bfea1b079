"""The launcher's one way to wait for something: :func:`poll_until`.

Every wait of the launcher (the SuperLink's ``/health``, SuperNodes coming online, a run's
final status, processes exiting) is a probe called at an interval until its answer says
"done" or a timeout passes. Keeping that loop in one place keeps deadlines, the last
check at the deadline and the timeout message the same everywhere.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


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
