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
- Partial participation: devices that drop out (``faults.dropout``) or whose node is
  offline get no message; P2P and hybrid devices then train with the PKBs they hold, an
  edge forwards to whichever of its devices take part, and the ledger records only
  transfers that happened. A device that failed loses the KBs sent to it that round (they
  are sent, and counted, again). Each round's participation goes to
  ``participation.jsonl``; a round with too few successes fails the run
  (:mod:`crlsc_fl.federation.failures`). After each round the strategy's state is
  checkpointed (:mod:`crlsc_fl.federation.checkpoint`) so that the run can be resumed.

A topology overrides :meth:`plan_round` (and :meth:`setup`/:meth:`after_round` if needed).
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from crlsc_fl.config import ScenarioConfig
from crlsc_fl.federation.checkpoint import Checkpoints
from crlsc_fl.federation.device_round import RoundTask
from crlsc_fl.federation.devices import DeviceSpec
from crlsc_fl.federation.failures import check_round, error_fields
from crlsc_fl.federation.faults import digest, dropped_devices, tampered_kb
from crlsc_fl.federation.ledger import CommLedger, Transfer
from crlsc_fl.federation.records import request_content, weights_nbytes
from crlsc_fl.federation.results import RunWriter

log = logging.getLogger("crlsc_fl")
Hop = tuple[str, str, str]  # (src, dst, tier)


@dataclass
class DevicePlan:
    """What one device does in one round and what it receives.

    ``kb_routes[key]`` lists the hops by which payload ``key`` (a KB, the anchor set
    ``anchor_key`` that grounds ``crlsc-grounded`` devices, or a peer's anchor-keyed PKB in
    ``peer_anchor_keys``) reaches the device (counted only for hops whose receiver does not
    hold it yet).
    """

    method: str
    kb_keys: tuple[str, ...] = ()
    kb_routes: dict[str, list[Hop]] = field(default_factory=dict)
    weights: ArrayRecord | None = None
    return_pkb: bool = False
    return_weights: bool = False
    anchor_key: str | None = None
    peer_anchor_keys: tuple[str, ...] = ()

    def payload_keys(self) -> tuple[str, ...]:
        return self.kb_keys + ((self.anchor_key,) if self.anchor_key else ()) + self.peer_anchor_keys

    def payload_kind(self, key: str) -> str:
        """The ledger's name for payload ``key``."""
        return "anchors" if key == self.anchor_key else "anchor-pkb" if key in self.peer_anchor_keys else "kb"


@dataclass(frozen=True)
class MentorPayloads:
    """The server's knowledge as it goes on the wire: the SKB and, when the devices are
    grounded, the anchor set, each as (key, bytes)."""

    skb: tuple[str, bytes]
    anchors: tuple[str, bytes] | None = None


@dataclass
class FederationContext:
    """What the ServerApp hands every strategy."""

    cfg: ScenarioConfig
    devices: list[DeviceSpec]
    node_ids: dict[int, int]  # device -> Flower node id
    dim: int
    writer: RunWriter
    mentor: Callable[[], MentorPayloads]  # builds (once) and returns the server's SKB and anchors
    run_key: str = ""  # names the devices' state directories: the first run's id, also when resumed
    checkpoints: Checkpoints | None = None


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
        self.state_round: dict[int, int] = {}  # device -> last round whose state it keeps (0: none)
        self.round_offset = 0  # rounds done before a resume: Flower counts from 1 again
        self.sent: dict[int, tuple[str, ...]] = {}  # this round: device -> KB keys sent to it
        self.absent: dict[int, str] = {}  # this round: device -> why it got no message
        self.corrupted: list[int] = []  # this round: devices sent a tampered KB (faults.corrupt-kb)
        self.messages: dict[int, Message] = {}  # this round: device -> its train message
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
        key, blob = self.ctx.mentor().skb
        self.blobs.setdefault(key, blob)
        return key

    @property
    def kb_method(self) -> str:
        """The method of devices that train with a KB (``train.kb-method``)."""
        return self.ctx.cfg.train.kb_method

    def anchor_route(self, device: int) -> tuple[str | None, dict[str, list[Hop]]]:
        """The anchor set's key and its route (cloud -> edge -> device) when the devices are
        grounded (``crlsc-grounded``); nothing otherwise."""
        anchors = self.ctx.mentor().anchors if self.kb_method == "crlsc-grounded" else None
        if anchors is None:
            return None, {}
        key, blob = anchors
        self.blobs.setdefault(key, blob)
        return key, {key: self.cloud_route(device)}

    def local_plan(self, device: int, **kwargs: object) -> DevicePlan:
        """No KB to learn from: plain DCL, or DCL plus anchor alignment for grounded devices
        (so that their PKBs live in the shared space from the first round)."""
        anchor, routes = self.anchor_route(device)
        return DevicePlan("crlsc-grounded" if anchor else "dcl", (), routes, anchor_key=anchor, **kwargs)  # type: ignore[arg-type]

    def skb_plan(self, device: int, **kwargs: object) -> DevicePlan:
        """Mentor-to-device: train with the SKB (and the anchors), delivered cloud -> edge -> device."""
        key = self.shared_kb_key()
        anchor, routes = self.anchor_route(device)
        return DevicePlan(self.kb_method, (key,), {key: self.cloud_route(device), **routes}, anchor_key=anchor, **kwargs)  # type: ignore[arg-type]

    def peer_plan(self, device: int, peers: Iterable[int], **kwargs: object) -> DevicePlan:
        """Device-to-device: train with the peers' latest PKBs (:meth:`local_plan` if none yet).
        A peer absent this round sends nothing: the device uses the newest PKB of it that it
        holds. Grounded devices also get the anchors from the cloud (once). With
        ``topology.peer-knowledge`` ``anchor-pkb`` (or its random control) the PKBs are
        anchor-keyed and become the device's alignment targets, not a KB to retrieve from."""
        keys, routes = [], {}
        for p in peers:
            if p not in self.absent and p in self.pkbs:
                keys.append(self.pkbs[p])
                routes[self.pkbs[p]] = [(device_node(p), device_node(device), "d2d")]
            elif (held := self.held_pkb(device, p)) is not None:
                keys.append(held)
        if not keys:
            return self.local_plan(device, **kwargs)
        anchor, anchor_routes = self.anchor_route(device)
        kb_keys, peer_anchor_keys = ((), tuple(keys)) if self.ctx.cfg.topology.peer_knowledge != "pkb" else (tuple(keys), ())
        return DevicePlan(self.kb_method, kb_keys, {**routes, **anchor_routes}, anchor_key=anchor,  # type: ignore[arg-type]
                          peer_anchor_keys=peer_anchor_keys, **kwargs)

    def held_pkb(self, device: int, peer: int) -> str | None:
        """The newest PKB of ``peer`` that ``device`` holds, if any."""
        prefix = f"pkb-{self.name}-d{peer}-r"
        held = [k for k in self.holdings[device_node(device)] if k.startswith(prefix)]
        return max(held, key=lambda k: int(k[len(prefix):])) if held else None

    # -- Flower Strategy hooks --------------------------------------------------------
    def deliveries(
        self, server_round: int, absent: Iterable[int] = ()
    ) -> list[tuple[int, RoundTask, dict[str, bytes], ArrayRecord | None]]:
        """Per device taking part: its task, the KB (and anchor) blobs it must receive now, and weights.

        A payload goes only to devices that do not hold it yet, and every hop of its route is
        recorded once per receiver in the ledger (kind ``kb`` or ``anchors``). ``absent``
        devices get nothing and nothing is recorded for them.
        """
        out = []
        self.absent = {d: self.absent.get(d, "absent") for d in absent}
        for device, plan in sorted(self.plan_round(server_round).items()):
            if device in self.absent:
                continue
            to_send: dict[str, bytes] = {}
            for key in plan.payload_keys():
                already_held = key in self.holdings[device_node(device)]
                kind = plan.payload_kind(key)
                for src, dst, tier in plan.kb_routes.get(key, []):
                    if key not in self.holdings[dst]:
                        self.ledger.record(server_round, kind, src, dst, tier, len(self.blobs[key]))
                        self.holdings[dst].add(key)
                if key not in self.holdings[device_node(device)]:
                    raise RuntimeError(f"{self.name}: no route delivers {kind} {key!r} to device {device}")
                if not already_held:
                    to_send[key] = self.blobs[key]
            if plan.weights is not None:
                for src, dst, tier in self.cloud_route(device):
                    self.ledger.record(server_round, "weights", src, dst, tier, weights_nbytes(plan.weights))
            task = RoundTask(
                self.name, server_round, plan.method, self.ctx.dim, plan.kb_keys, plan.return_pkb, plan.return_weights,
                run_key=self.ctx.run_key, state_round=self.state_round.get(device, 0), anchor_key=plan.anchor_key or "",
                peer_anchor_keys=plan.peer_anchor_keys,
            )
            out.append((device, task, to_send, plan.weights))
        return out

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        server_round += self.round_offset
        cfg = self.ctx.cfg
        scenario = cfg.to_flat()
        online = set(grid.get_node_ids())
        self.absent = {d: "dropped" for d in dropped_devices(cfg, server_round)}
        self.absent.update({d: "offline" for d, node in self.ctx.node_ids.items() if node not in online and d not in self.absent})
        corruptions = cfg.faults.corrupt_kb
        self.sent, self.corrupted, self.messages = {}, [], {}
        for device, task, to_send, weights in self.deliveries(server_round, self.absent):
            digests = {key: digest(blob) for key, blob in to_send.items()}
            if to_send and device in corruptions:  # injected fault: the payload is spoilt on the way
                for key, blob in to_send.items():
                    to_send[key], digests[key] = tampered_kb(corruptions[device], blob, self.ctx.dim, cfg.scenario.seed, server_round, device)
                self.corrupted.append(device)
            self.sent[device] = tuple(to_send)
            self.messages[device] = Message(
                content=request_content(scenario, task, to_send, weights, digests),
                dst_node_id=self.ctx.node_ids[device],
                message_type=MessageType.TRAIN,
            )
        return list(self.messages.values())

    def reply_device(self, reply: Message) -> int:
        """The device a reply is about. Flower's SuperLink answers for a node that went offline
        itself (source: the SuperLink), so fall back to the message the reply answers."""
        if reply.metadata.src_node_id in self.device_of:
            return self.device_of[reply.metadata.src_node_id]
        sent = {m.metadata.message_id: d for d, m in self.messages.items()}  # ids are set when pushed
        return sent[reply.metadata.reply_to_message_id]

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        server_round += self.round_offset
        ok: dict[int, RecordDict] = {}
        rows = []
        failed: list[int] = []
        for reply in replies:
            device = self.reply_device(reply)
            if reply.has_error():
                log.error("%s round %d: device %d failed: %s", self.name, server_round, device, reply.error.reason)
                rows.append(self._row(server_round, device, {}, **error_fields(str(reply.error.reason), reply.error.code)))
                failed.append(device)
                continue
            ok[device] = reply.content
        timeout = self.ctx.cfg.scenario.reply_timeout
        for device in sorted(set(self.sent) - set(ok) - set(failed)):
            message = f"no reply within {timeout:g} s of sending, or its node went offline"
            rows.append(self._row(server_round, device, {}, error=f"NoReply: {message}", error_type="NoReply", error_message=message))
            failed.append(device)
        for device in sorted(d for d, why in self.absent.items() if why == "offline"):
            rows.append(self._row(server_round, device, {}, error="NodeOffline: the device's node is not connected",
                                  error_type="NodeOffline", error_message="the device's node is not connected"))
            failed.append(device)
        for device in failed:  # what a failed device received is not kept: send it again next time
            self.holdings[device_node(device)].difference_update(self.sent.get(device, ()))
        for device in ok:
            self.state_round[device] = server_round
        self.after_round(server_round, ok)
        totals = self.ledger.device_totals(server_round)
        for device, content in sorted(ok.items()):
            metrics = dict(content.metric_records["metrics"])
            rows.append(self._row(server_round, device, {**metrics, **totals.get(device_node(device), {})}))
        self.ctx.writer.append_metrics(rows)
        self.ctx.writer.write_json(f"communication-{self.name}.json", {"summary": self.ledger.summary(), "transfers": self.ledger.rows()})
        attempted = len(self.sent) + sum(why == "offline" for why in self.absent.values())
        self.ctx.writer.append_rows("participation.jsonl", [{
            "topology": self.name, "round": server_round, "devices": len(self.ctx.devices),
            "dropped": sorted(d for d, why in self.absent.items() if why == "dropped"),
            "sent": attempted, "succeeded": len(ok), "failed": sorted(failed), "corrupted_kb": self.corrupted,
        }])
        check_round(self.name, server_round, attempted, len(ok), self.ctx.cfg.scenario.min_success_fraction)
        if self.ctx.checkpoints is not None:
            self.ctx.checkpoints.save(self.name, server_round, self.state_dict())
        good = [r for r in rows if "error" not in r]
        if not good:
            return None, None
        return None, MetricRecord({k: float(np.mean([r[k] for r in good])) for k in ("knn_top1", "knn_top5", "loss")})

    def _row(self, server_round: int, device: int, values: dict, **error: str) -> dict:
        spec = self.ctx.devices[device]
        row = {"topology": self.name, "round": server_round, "device": device, "arch": spec.arch, "width": spec.width,
               "profile": spec.profile}
        row.update({"bytes_received": 0, "bytes_sent": 0, "transfer_seconds": 0.0})
        row.update(values)
        row.update(error)
        return row

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue this strategy after the last round."""
        return {
            "transfers": [asdict(t) for t in self.ledger.transfers],
            "holdings": {node: sorted(keys) for node, keys in self.holdings.items()},
            "blobs": dict(self.blobs), "pkbs": dict(self.pkbs), "state_round": dict(self.state_round),
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict, completed_rounds: int) -> None:
        self.ledger.transfers = [Transfer(**t) for t in state["transfers"]]
        self.holdings = defaultdict(set, {node: set(keys) for node, keys in state["holdings"].items()})
        self.blobs, self.pkbs = dict(state["blobs"]), dict(state["pkbs"])
        self.state_round = dict(state["state_round"])
        self.load_extra_state(state["extra"])
        self.round_offset = completed_rounds

    def extra_state(self) -> dict:
        """Topology-specific state to checkpoint (``fedavg``: the averaged weights)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def on_reply(self, server_round: int, reply: Message) -> None:
        """Called by the grid as each reply arrives (before ``aggregate_train``): records
        uploaded weights on their links and hands the content to :meth:`consume_reply`."""
        if reply.has_error():
            return
        device = self.reply_device(reply)
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
