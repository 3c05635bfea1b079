"""The one abstract knowledge-transfer strategy, built on Flower's ``Strategy`` hooks.

Flower's ``Strategy.start`` runs the rounds; this base class implements its hooks once:

- ``configure_train``: asks the subclass for a :class:`DevicePlan` per device
  (:meth:`plan_round`), attaches only the KBs a device does not hold yet, records every
  hop of every transfer in the :class:`CommLedger`, and builds one message per device.
- ``on_reply`` (called by :class:`crlsc_fl.federation.progress.ProgressGrid` as replies
  arrive): records uploads and lets the subclass fold large payloads into running state
  (:meth:`consume_reply`), so 100 devices' weights are never held at once.
- ``aggregate_train``: lets the subclass keep what it needs (:meth:`after_round`: PKBs by
  default, averaged weights for ``fedavg``), and writes each device's metrics line at once,
  so a crash later loses no finished round.
- Evaluation runs on the device right after training (one round trip per device and
  round), so ``configure_evaluate`` sends nothing.

A topology overrides :meth:`plan_round` (and :meth:`setup`/:meth:`after_round` if needed).
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from crlsc_fl.config import ScenarioConfig
from crlsc_fl.federation.device_round import RoundTask
from crlsc_fl.federation.devices import DeviceSpec
from crlsc_fl.federation.ledger import CommLedger
from crlsc_fl.federation.records import request_content, weights_nbytes
from crlsc_fl.federation.results import RunWriter

log = logging.getLogger("crlsc_fl")
Hop = tuple[str, str, str]  # (src, dst, tier)


@dataclass
class DevicePlan:
    """What one device does in one round and what it receives.

    ``kb_routes[key]`` lists the hops by which KB ``key`` reaches the device (counted only
    for hops whose receiver does not hold the KB yet).
    """

    method: str
    kb_keys: tuple[str, ...] = ()
    kb_routes: dict[str, list[Hop]] = field(default_factory=dict)
    weights: ArrayRecord | None = None
    return_pkb: bool = False
    return_weights: bool = False


@dataclass
class FederationContext:
    """What the ServerApp hands every strategy."""

    cfg: ScenarioConfig
    devices: list[DeviceSpec]
    node_ids: dict[int, int]  # device -> Flower node id
    dim: int
    writer: RunWriter
    shared_kb: Callable[[], tuple[str, bytes]]  # builds (once) and returns the SKB's (key, bytes)


def device_node(device: int) -> str:
    return f"device-{device}"


class KnowledgeTransferStrategy(Strategy):
    name = "base"

    def __init__(self, ctx: FederationContext) -> None:
        self.ctx = ctx
        self.ledger = CommLedger(ctx.cfg.network)
        self.blobs: dict[str, bytes] = {}
        self.holdings: dict[str, set[str]] = defaultdict(set)  # node name -> KB keys it holds (accounting)
        self.pkbs: dict[int, str] = {}  # device -> key of its latest PKB
        self.device_of = {node: device for device, node in ctx.node_ids.items()}
        self.setup()

    # -- hooks for topologies ---------------------------------------------------------
    def setup(self) -> None:
        """Build graphs, groups... once, before the first round."""

    @abstractmethod
    def plan_round(self, server_round: int) -> dict[int, DevicePlan]:
        """The plan of every device taking part in ``server_round``."""

    def after_round(self, server_round: int, replies: dict[int, RecordDict]) -> None:
        """Keep each device's returned PKB (the previous one is dropped)."""
        for device, content in replies.items():
            if "pkb" in content.config_records:
                old = self.pkbs.get(device)
                key = f"pkb-{self.name}-d{device}-r{server_round}"
                self.blobs[key] = bytes(content.config_records["pkb"]["blob"])  # type: ignore[arg-type]
                self.pkbs[device] = key
                if old is not None:
                    self.blobs.pop(old, None)

    # -- helpers for topologies -------------------------------------------------------
    def edge_of(self, device: int) -> int:
        """Devices are split over edge nodes in contiguous blocks."""
        per_edge = -(-len(self.ctx.devices) // self.ctx.cfg.topology.edges)
        return device // per_edge

    def cloud_route(self, device: int) -> list[Hop]:
        edge = f"edge-{self.edge_of(device)}"
        return [("cloud", edge, "cloud-edge"), (edge, device_node(device), "edge-device")]

    def shared_kb_key(self) -> str:
        key, blob = self.ctx.shared_kb()
        self.blobs.setdefault(key, blob)
        return key

    def skb_plan(self, device: int, **kwargs: object) -> DevicePlan:
        """Mentor-to-device: train with the SKB, delivered cloud -> edge -> device."""
        key = self.shared_kb_key()
        return DevicePlan("crlsc", (key,), {key: self.cloud_route(device)}, **kwargs)  # type: ignore[arg-type]

    def peer_plan(self, device: int, peers: Iterable[int], **kwargs: object) -> DevicePlan:
        """Device-to-device: train with the peers' latest PKBs (plain DCL if none yet)."""
        keys = tuple(self.pkbs[p] for p in peers if p in self.pkbs)
        if not keys:
            return DevicePlan("dcl", **kwargs)  # type: ignore[arg-type]
        routes = {self.pkbs[p]: [(device_node(p), device_node(device), "d2d")] for p in peers if p in self.pkbs}
        return DevicePlan("crlsc", keys, routes, **kwargs)  # type: ignore[arg-type]

    # -- Flower Strategy hooks --------------------------------------------------------
    def deliveries(self, server_round: int) -> list[tuple[int, RoundTask, dict[str, bytes], ArrayRecord | None]]:
        """Per device: its task, the KB blobs it must receive now, and weights (if any).

        A KB goes only to devices that do not hold it yet, and every hop of its route is
        recorded once per receiver in the ledger.
        """
        out = []
        for device, plan in sorted(self.plan_round(server_round).items()):
            to_send: dict[str, bytes] = {}
            for key in plan.kb_keys:
                already_held = key in self.holdings[device_node(device)]
                for src, dst, tier in plan.kb_routes.get(key, []):
                    if key not in self.holdings[dst]:
                        self.ledger.record(server_round, "kb", src, dst, tier, len(self.blobs[key]))
                        self.holdings[dst].add(key)
                if key not in self.holdings[device_node(device)]:
                    raise RuntimeError(f"{self.name}: no route delivers KB {key!r} to device {device}")
                if not already_held:
                    to_send[key] = self.blobs[key]
            if plan.weights is not None:
                for src, dst, tier in self.cloud_route(device):
                    self.ledger.record(server_round, "weights", src, dst, tier, weights_nbytes(plan.weights))
            task = RoundTask(
                self.name, server_round, plan.method, self.ctx.dim, plan.kb_keys, plan.return_pkb, plan.return_weights
            )
            out.append((device, task, to_send, plan.weights))
        return out

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        scenario = self.ctx.cfg.to_flat()
        return [
            Message(
                content=request_content(scenario, task, to_send, weights),
                dst_node_id=self.ctx.node_ids[device],
                message_type=MessageType.TRAIN,
            )
            for device, task, to_send, weights in self.deliveries(server_round)
        ]

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        ok: dict[int, RecordDict] = {}
        rows = []
        for reply in replies:
            device = self.device_of[reply.metadata.src_node_id]
            if reply.has_error():
                log.error("%s round %d: device %d failed: %s", self.name, server_round, device, reply.error.reason)
                rows.append(self._row(server_round, device, {}, error=str(reply.error.reason)))
                continue
            ok[device] = reply.content
        self.after_round(server_round, ok)
        totals = self.ledger.device_totals(server_round)
        for device, content in sorted(ok.items()):
            metrics = dict(content.metric_records["metrics"])
            rows.append(self._row(server_round, device, {**metrics, **totals.get(device_node(device), {})}))
        self.ctx.writer.append_metrics(rows)
        self.ctx.writer.write_json(f"communication-{self.name}.json", {"summary": self.ledger.summary(), "transfers": self.ledger.rows()})
        good = [r for r in rows if "error" not in r]
        if not good:
            return None, None
        return None, MetricRecord({k: float(np.mean([r[k] for r in good])) for k in ("knn_top1", "knn_top5", "loss")})

    def _row(self, server_round: int, device: int, values: dict, error: str | None = None) -> dict:
        spec = self.ctx.devices[device]
        row = {"topology": self.name, "round": server_round, "device": device, "arch": spec.arch, "profile": spec.profile}
        row.update({"bytes_received": 0, "bytes_sent": 0, "transfer_seconds": 0.0})
        row.update(values)
        if error is not None:
            row["error"] = error
        return row

    def on_reply(self, server_round: int, reply: Message) -> None:
        """Called by the grid as each reply arrives (before ``aggregate_train``): records
        uploaded weights on their links and hands the content to :meth:`consume_reply`."""
        if reply.has_error():
            return
        device = self.device_of[reply.metadata.src_node_id]
        if "weights" in reply.content.array_records:
            nbytes = weights_nbytes(reply.content.array_records["weights"])
            for src, dst, tier in reversed(self.cloud_route(device)):
                self.ledger.record(server_round, "weights", dst, src, tier, nbytes)
        self.consume_reply(server_round, device, reply.content)

    def consume_reply(self, server_round: int, device: int, content: RecordDict) -> None:
        """Fold a large payload into running state and drop it (``fedavg``); default: keep all."""

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return []  # devices evaluate right after training, in the same round trip

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return None

    def summary(self) -> None:
        log.info("%s: %d devices, %d rounds", self.name, len(self.ctx.devices), self.ctx.cfg.scenario.rounds)
