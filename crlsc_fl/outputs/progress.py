"""The run's progress line, and each round's wall time in ``rounds.jsonl``.

While a round's replies come in, every few seconds (and once when the last is in), one line
per topology: the devices done, the failed replies (errors and devices given up on), the
seconds in the round and in the run, and the running mean kNN top-1 of the replies so far::

    [quick/fedavg] round 3/10: 57/100 devices done, 1 errors, 42 s in round, 311 s in run, mean kNN top-1 48.2%

At the end of the round, a warning if devices were given up on, and the round's row in
``rounds.jsonl`` (label, round, devices, replies, errors, wall seconds; read by
``benchmarks/federation_overhead.py``).

Why here and not in the Grid wrapper (:class:`crlsc_fl.flower.grid.ProgressGrid`): the line is
one of the run's outputs, beside ``rounds.jsonl``, read by people and by tests ("devices done",
"N errors"); the Grid only moves messages and tells :class:`RoundProgress` what arrived. The
line goes through Flower's logger, so ``flwr run --stream`` shows it with the ServerApp's other
lines.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from logging import INFO, WARNING

from flwr.common.logger import log

from crlsc_fl.outputs.run_dir import RunDirectory


@dataclass
class RoundProgress:
    """One round of one topology (``label``: ``scenario/topology``) as its replies arrive.

    ``run_start`` is the run's ``time.time()`` at start; the round's own clock starts when
    this object is made.
    """

    label: str
    server_round: int
    num_rounds: int
    devices: int  # messages sent this round
    run_start: float
    every: float = 5.0  # seconds between progress lines
    replies: int = 0
    errors: int = 0  # replies that carry an error
    given_up: int = 0  # messages no reply is waited for any more
    accuracies: list[float] = field(default_factory=list)  # kNN top-1 of the replies that report one
    started: float = field(default_factory=time.monotonic)
    last_line: float = field(init=False)

    def __post_init__(self) -> None:
        self.last_line = self.started

    def reply(self, failed: bool, accuracy: float | None) -> None:
        """One reply came in: an error, or (possibly) a device's kNN top-1."""
        self.replies += 1
        self.errors += failed
        if accuracy is not None:
            self.accuracies.append(accuracy)

    def give_up(self, count: int) -> None:
        """``count`` more messages will not be waited for (timed out, or their node went offline)."""
        self.given_up += count

    def due(self, now: float, last: bool) -> bool:
        """Whether a line is due at ``now`` (``time.monotonic()``): ``every`` seconds since the last, or the round's last."""
        return now - self.last_line >= self.every or last

    def line(self, now: float) -> None:
        """Log the progress line."""
        self.last_line = now
        mean = f"{sum(self.accuracies) / len(self.accuracies):.1f}%" if self.accuracies else "n/a"
        log(
            INFO, "[%s] round %d/%d: %d/%d devices done, %d errors, %.0f s in round, %.0f s in run, mean kNN top-1 %s",
            self.label, self.server_round, self.num_rounds, self.replies, self.devices, self.errors + self.given_up,
            now - self.started, time.time() - self.run_start, mean,
        )

    def finish(self, run_dir: RunDirectory | None, timeout: float | None) -> None:
        """The round is over: warn about the devices given up on; the round's row in ``rounds.jsonl``."""
        if self.given_up:
            log(WARNING, "[%s] round %d/%d: no reply from %d devices (timeout %.0f s or node offline); counted as failed",
                self.label, self.server_round, self.num_rounds, self.given_up, timeout or 0)
        if run_dir is not None:
            run_dir.append_round_time({
                "label": self.label, "round": self.server_round, "devices": self.devices, "replies": self.replies,
                "errors": self.errors + self.given_up, "wall_seconds": time.monotonic() - self.started,
            })
