""":func:`poll_until`, the launcher's one wait loop."""

from __future__ import annotations

import pytest

from crlsc_fl.launcher.polling import PollTimeout, poll_until


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
