"""A Grid wrapper that streams a round's replies and reports progress as they come in.

Flower's ``Strategy.start`` uses only ``send_and_receive``; the strategies' hooks also ask
``get_node_ids``: those two are what :class:`ProgressGrid` offers.
``send_and_receive`` keeps at most ``max_in_flight`` messages pushed at once (a sliding
window: a new one is pushed as each reply arrives), hands every reply to ``on_reply`` as it
comes (so a strategy can fold large payloads such as weights into running sums and drop
them), and logs, every few seconds, the devices done, the failed replies, elapsed time and
the running mean kNN top-1 of the replies so far, and calls ``on_round_end(round)`` once a
round's replies are in. A resumed run starts counting at ``first_round`` + 1. ``timeout`` applies to each message from when it is pushed; a
message whose destination node is no longer online is not waited for either. Each round's
wall time goes to ``rounds.jsonl`` (through :class:`crlsc_fl.outputs.run_dir.RunDirectory`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from logging import INFO, WARNING

from flwr.app import Message
from flwr.common.logger import log
from flwr.serverapp import Grid

from crlsc_fl.codec import reply_accuracy
from crlsc_fl.outputs.run_dir import RunDirectory


class ProgressGrid:
    """Wraps the ServerApp's Grid for one topology's rounds (``label``: ``scenario/topology``)."""

    def __init__(
        self, grid: Grid, label: str, num_rounds: int, run_start: float, run_dir: RunDirectory | None = None,
        max_in_flight: int = 0, on_reply: Callable[[int, Message], None] | None = None, every: float = 5.0,
        first_round: int = 0, on_round_end: Callable[[int], object] | None = None,
    ) -> None:
        self._grid = grid
        self.label, self.num_rounds, self.run_start, self.every = label, num_rounds, run_start, every
        self.run_dir, self.max_in_flight, self.on_reply, self.on_round_end = run_dir, max_in_flight, on_reply, on_round_end
        self.server_round = first_round

    def get_node_ids(self) -> Iterable[int]:
        """The nodes connected now."""
        return self._grid.get_node_ids()

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        if not messages:
            return []
        self.server_round += 1
        queue, total = list(reversed(messages)), len(messages)
        window = self.max_in_flight or total
        pending: dict[str, tuple[int, float]] = {}  # message id -> (destination node, pushed at)
        replies, accuracies, errors, given_up = [], [], 0, 0
        start = last_report = time.monotonic()
        while queue or pending:
            if queue and len(pending) < window:
                batch = [queue.pop() for _ in range(min(window - len(pending), len(queue)))]
                pushed_at = time.monotonic()
                for message, mid in zip(batch, self._grid.push_messages(batch)):
                    if mid:
                        pending[mid] = (message.metadata.dst_node_id, pushed_at)
            for reply in self._grid.pull_messages(list(pending)):
                pending.pop(reply.metadata.reply_to_message_id, None)
                if self.on_reply is not None:
                    self.on_reply(self.server_round, reply)
                replies.append(reply)
                errors += reply.has_error()
                if (accuracy := reply_accuracy(reply)) is not None:
                    accuracies.append(accuracy)
            now = time.monotonic()
            if now - last_report >= self.every or not (queue or pending):
                last_report = now
                given_up += self._give_up(pending, now, timeout)
                mean = f"{sum(accuracies) / len(accuracies):.1f}%" if accuracies else "n/a"
                log(
                    INFO, "[%s] round %d/%d: %d/%d devices done, %d errors, %.0f s in round, %.0f s in run, mean kNN top-1 %s",
                    self.label, self.server_round, self.num_rounds, len(replies), total, errors + given_up, now - start,
                    time.time() - self.run_start, mean,
                )
            if pending:
                time.sleep(0.2)
        if given_up:
            log(WARNING, "[%s] round %d/%d: no reply from %d devices (timeout %.0f s or node offline); counted as failed",
                self.label, self.server_round, self.num_rounds, given_up, timeout or 0)
        if self.run_dir is not None:  # round wall times, for benchmarks/federation_overhead.py
            self.run_dir.append_round_time({
                "label": self.label, "round": self.server_round, "devices": total, "replies": len(replies),
                "errors": errors + given_up, "wall_seconds": time.monotonic() - start,
            })
        if self.on_round_end is not None:
            self.on_round_end(self.server_round)
        return replies

    def _give_up(self, pending: dict[str, tuple[int, float]], now: float, timeout: float | None) -> int:
        """Stop waiting for messages older than ``timeout`` or addressed to a node that went
        offline (a SuperNode that died); returns how many. The strategy records them as failed."""
        online = set(self.get_node_ids())
        lost = [mid for mid, (node, pushed) in pending.items()
                if node not in online or (timeout is not None and now - pushed > timeout)]
        for mid in lost:
            del pending[mid]
        return len(lost)
