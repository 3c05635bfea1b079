"""A Grid wrapper that reports progress while a round's replies come in.

``send_and_receive`` pushes all messages, then pulls replies and logs, every few seconds,
the devices done, elapsed time and the running mean kNN top-1 of the replies so far; each
round's wall time is appended to ``rounds.jsonl`` in the run directory.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from logging import INFO
from typing import Any

from flwr.app import Message
from flwr.common.logger import log
from flwr.serverapp import Grid

from crlsc_fl.federation.results import RunWriter


class ProgressGrid:
    def __init__(
        self, grid: Grid, label: str, num_rounds: int, run_start: float, writer: RunWriter | None = None, every: float = 5.0
    ) -> None:
        self._grid = grid
        self.label, self.num_rounds, self.run_start, self.every = label, num_rounds, run_start, every
        self.writer = writer
        self.server_round = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        if not messages:
            return []
        self.server_round += 1
        pending = {mid for mid in self._grid.push_messages(messages) if mid}
        total, replies, accuracies = len(pending), [], []
        start = last_report = time.monotonic()
        while pending and (timeout is None or time.monotonic() - start < timeout):
            for reply in self._grid.pull_messages(pending):
                pending.discard(reply.metadata.reply_to_message_id)
                replies.append(reply)
                if not reply.has_error() and "metrics" in reply.content.metric_records:
                    accuracies.append(float(reply.content.metric_records["metrics"]["knn_top1"]))
            now = time.monotonic()
            if now - last_report >= self.every or not pending:
                last_report = now
                mean = f"{sum(accuracies) / len(accuracies):.1f}%" if accuracies else "n/a"
                log(
                    INFO, "[%s] round %d/%d: %d/%d devices done, %.0f s in round, %.0f s in run, mean kNN top-1 %s",
                    self.label, self.server_round, self.num_rounds, total - len(pending), total, now - start,
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
