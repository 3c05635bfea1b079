"""The one abstract knowledge-transfer strategy, built on Flower's ``Strategy`` hooks.

Flower's ``Strategy.start`` runs the rounds; this base class owns the shared loop and a
topology overrides only what differs: :meth:`plan_round` (which device trains how, with
which knowledge; built from :class:`strategies.plans.DevicePlans`), and if needed
:meth:`setup`, :meth:`consume_reply`, :meth:`after_round` and its checkpointed state.

- ``configure_train``: asks :meth:`plan_round` for every device's plan, lets
  :class:`KnowledgeDelivery` attach only the payloads a device does not hold yet (and
  count every hop), and builds one message per device.
- ``on_reply`` (called by :class:`crlsc_fl.flower.grid.ProgressGrid` as replies arrive):
  records uploads and lets the subclass fold large payloads into running state
  (:meth:`consume_reply`), so 100 devices' weights are never held at once.
- ``aggregate_train``: lets the subclass keep what it needs (:meth:`after_round`: PKBs by
  default, averaged weights for ``fedavg``), and has the run directory append each device's
  metrics line at once, so a crash later loses no finished round.
- Evaluation runs on the device right after training (one round trip per device and
  round), so ``configure_evaluate`` sends nothing.
- Partial participation: devices that drop out (``faults.dropout``) or whose node is
  offline get no message; P2P and hybrid devices then train with the PKBs they hold, an
  edge forwards to whichever of its devices take part, and the ledger records only
  transfers that happened. A device that failed loses the KBs sent to it that round (they
  are sent, and counted, again). Each round's participation goes to
  ``participation.jsonl``; a round with too few successes fails the run
  (:mod:`crlsc_fl.bookkeeping.failures`). After each round the strategy's state is
  checkpointed (:mod:`crlsc_fl.bookkeeping.checkpoint`) so that the run can be resumed.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from crlsc_fl import codec
from crlsc_fl.bookkeeping.failures import check_round, check_simulation_intact, error_fields
from crlsc_fl.bookkeeping.knowledge_delivery import DevicePlan, KnowledgeDelivery, device_node
from crlsc_fl.device.device_round import RoundTask
from crlsc_fl.outputs.run_dir import error_row
from crlsc_fl.scenario.faults import digest, dropped_devices, tampered_kb
from strategies.context import FederationContext
from strategies.plans import DevicePlans

log = logging.getLogger("crlsc_fl")
Delivery = tuple[int, RoundTask, dict[str, bytes], ArrayRecord | None]  # device, task, blobs to send, weights
ROUND_METRICS = ("knn_top1", "knn_top5", "loss")  # averaged over devices for Flower's history


class KnowledgeTransferStrategy(Strategy):
    name = "base"

    def __init__(self, ctx: FederationContext) -> None:
        self.ctx = ctx
        self.delivery = KnowledgeDelivery(self.name, ctx.cfg.network)
        self.plans = DevicePlans(ctx, self.delivery)
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

    def consume_reply(self, server_round: int, device: int, content: RecordDict) -> None:
        """Fold a large payload into running state and drop it (``fedavg``); default: keep all."""

    def after_round(self, server_round: int, replies: dict[int, RecordDict]) -> None:
        """Keep each device's returned PKB (the previous one is dropped)."""
        for device, content in replies.items():
            if (pkb := codec.reply_pkb(content)) is not None:
                self.delivery.keep_pkb(server_round, device, pkb)

    def extra_state(self) -> dict:
        """Topology-specific state to checkpoint (``fedavg``: the averaged weights)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Restore what :meth:`extra_state` returned."""

    # -- Flower Strategy hooks --------------------------------------------------------
    def deliveries(self, server_round: int, absent: Iterable[int] = ()) -> list[Delivery]:
        """Per device taking part: its task, the KB (and anchor) blobs it must receive now, and
        weights (see :meth:`KnowledgeDelivery.deliver`). ``absent`` devices get nothing and
        nothing is recorded for them."""
        out = []
        self.absent = {d: self.absent.get(d, "absent") for d in absent}
        for device, plan in sorted(self.plan_round(server_round).items()):
            if device in self.absent:
                continue
            to_send = self.delivery.deliver(server_round, device, plan)
            if plan.weights is not None:
                self.delivery.record_weights(server_round, self.plans.cloud_route(device), codec.weights_nbytes(plan.weights))
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
        self.absent = {d: "dropped" for d in dropped_devices(cfg.faults, cfg.devices.num_devices, cfg.scenario.seed, server_round)}
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
            self.messages[device] = codec.train_message(self.ctx.node_ids[device], scenario, task, to_send, weights, digests)
        return list(self.messages.values())

    def on_reply(self, server_round: int, reply: Message) -> None:
        """Called by the grid as each reply arrives (before ``aggregate_train``): records
        uploaded weights on their links and hands the content to :meth:`consume_reply`."""
        if reply.has_error():
            return
        device = self.reply_device(reply)
        if (nbytes := codec.reply_weights_nbytes(reply.content)) is not None:
            self.delivery.record_weights(server_round, self.plans.cloud_route(device), nbytes, upload=True)
        self.consume_reply(server_round, device, reply.content)

    def reply_device(self, reply: Message) -> int:
        """The device a reply is about. Flower's SuperLink answers for a node that went offline
        itself (source: the SuperLink), so fall back to the message the reply answers."""
        if reply.metadata.src_node_id in self.device_of:
            return self.device_of[reply.metadata.src_node_id]
        sent = {m.metadata.message_id: d for d, m in self.messages.items()}  # ids are set when pushed
        return sent[reply.metadata.reply_to_message_id]

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        server_round += self.round_offset
        succeeded, failed = self.sort_replies(server_round, replies)
        for device in failed:  # what a failed device received is not kept: send it again next time
            self.delivery.forget(device, self.sent.get(device, ()))
        for device in succeeded:
            self.state_round[device] = server_round
        self.after_round(server_round, succeeded)
        totals = self.delivery.ledger.device_totals(server_round)
        metrics = {d: {**codec.reply_row(content), **totals.get(device_node(d), {})} for d, content in sorted(succeeded.items())}
        run_dir = self.ctx.run_dir
        run_dir.append_device_rows(self.name, server_round, self.ctx.devices, failed, metrics)
        run_dir.write_communication(self.name, self.delivery.ledger)
        attempted = len(self.sent) + sum(why == "offline" for why in self.absent.values())
        run_dir.append_participation({
            "topology": self.name, "round": server_round, "devices": len(self.ctx.devices),
            "dropped": sorted(d for d, why in self.absent.items() if why == "dropped"),
            "sent": attempted, "succeeded": len(succeeded), "failed": sorted(failed), "corrupted_kb": self.corrupted,
        })
        check_simulation_intact(self.name, server_round, failed)
        check_round(self.name, server_round, attempted, len(succeeded), self.ctx.cfg.scenario.min_success_fraction)
        run_dir.checkpoints.save(self.name, server_round, self.state_dict())
        return None, codec.mean_metrics(metrics.values(), ROUND_METRICS)

    def sort_replies(self, server_round: int, replies: Iterable[Message]) -> tuple[dict[int, RecordDict], dict[int, dict[str, str]]]:
        """(device -> content of its successful reply, device -> error fields). Failures, in
        this order: error replies as they came, devices sent a message that never answered,
        devices whose node was offline."""
        succeeded: dict[int, RecordDict] = {}
        failed: dict[int, dict[str, str]] = {}
        for reply in replies:
            device = self.reply_device(reply)
            if reply.has_error():
                log.error("%s round %d: device %d failed: %s", self.name, server_round, device, reply.error.reason)
                failed[device] = error_fields(str(reply.error.reason), reply.error.code)
            else:
                succeeded[device] = reply.content
        timeout = self.ctx.cfg.scenario.reply_timeout
        for device in sorted(set(self.sent) - set(succeeded) - set(failed)):
            failed[device] = error_row("NoReply", f"no reply within {timeout:g} s of sending, or its node went offline")
        for device in sorted(d for d, why in self.absent.items() if why == "offline"):
            failed[device] = error_row("NodeOffline", "the device's node is not connected")
        return succeeded, failed

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return []  # devices evaluate right after training, in the same round trip

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return None

    def summary(self) -> None:
        log.info("%s: %d devices, %d rounds", self.name, len(self.ctx.devices), self.ctx.cfg.scenario.rounds)

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue this strategy after the last round."""
        return {**self.delivery.state_dict(), "state_round": dict(self.state_round), "extra": self.extra_state()}

    def load_state_dict(self, state: dict, completed_rounds: int) -> None:
        self.delivery.load_state_dict(state)
        self.state_round = dict(state["state_round"])
        self.load_extra_state(state["extra"])
        self.round_offset = completed_rounds
