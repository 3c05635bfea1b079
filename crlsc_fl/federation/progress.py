"""A Grid wrapper that reports progress while a round's replies come in.

``send_and_receive`` keeps at most ``max_in_flight`` messages pushed at once (a sliding
window: a new one is pushed as each reply arrives), hands every reply to ``on_reply`` as it
comes (so a strategy can fold large payloads such as weights into running sums and drop
them), and logs, every few seconds, the devices done, elapsed time and the running mean
kNN top-1 of the replies so far. Each round's wall time goes to ``rounds.jsonl``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from logging import INFO
from typing import Any, Callable

from flwr.app import Message
from flwr.common.logger import log
from flwr.serverapp import Grid

from crlsc_fl.federation.results import RunWriter


class ProgressGrid:
    def __init__(
        self, grid: Grid, label: str, num_rounds: int, run_start: float, writer: RunWriter | None = None,
        max_in_flight: int = 0, on_reply: Callable[[int, Message], None] | None = None, every: float = 5.0,
    ) -> None:
        self._grid = grid
        self.label, self.num_rounds, self.run_start, self.every = label, num_rounds, run_start, every
        self.writer, self.max_in_flight, self.on_reply = writer, max_in_flight, on_reply
        self.server_round = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        if not messages:
            return []
        self.server_round += 1
        queue, total = list(reversed(messages)), len(messages)
        window = self.max_in_flight or total
        pending: set[str] = set()
        replies, accuracies = [], []
        start = last_report = time.monotonic()
        while (queue or pending) and (timeout is None or time.monotonic() - start < timeout):
            if queue and len(pending) < window:
                batch = [queue.pop() for _ in range(min(window - len(pending), len(queue)))]
                pending.update(mid for mid in self._grid.push_messages(batch) if mid)
            for reply in self._grid.pull_messages(pending):
                pending.discard(reply.metadata.reply_to_message_id)
                if self.on_reply is not None:
                    self.on_reply(self.server_round, reply)
                replies.append(reply)
                if not reply.has_error() and "metrics" in reply.content.metric_records:
                    accuracies.append(float(reply.content.metric_records["metrics"]["knn_top1"]))
            now = time.monotonic()
            if now - last_report >= self.every or not (queue or pending):
                last_report = now
                mean = f"{sum(accuracies) / len(accuracies):.1f}%" if accuracies else "n/a"
                log(
                    INFO, "[%s] round %d/%d: %d/%d devices done, %.0f s in round, %.0f s in run, mean kNN top-1 %s",
                    self.label, self.server_round, self.num_rounds, len(replies), total, now - start,
                    time.time() - self.run_start, mean,
                )
            if pending:
                time.sleep(0.2)
        if self.writer is not None:  # round wall times, for benchmarks/federation_overhead.py
            self.writer.append_rows(
                "rounds.jsonl",
                [{"label": self.label, "round": self.server_round, "devices": total, "replies": len(replies),
                  "wall_seconds": time.monotonic() - start}],
            )
        return replies
