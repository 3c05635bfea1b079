"""Every Flower message and record of the federation, built and parsed here, both directions.

It sits below the strategies (which build the train messages and read the replies) and the
Flower apps (:mod:`crlsc_fl.flower`), above the device's round whose task and outcome it carries.

Server -> device, and the reply:

- ``query`` (handshake): empty. Reply ``node`` (ConfigRecord: ``partition-id``, ``num-partitions``).
- ``train``: ``scenario`` (the flat run config; identical for all devices, so Flower sends
  it once), ``task`` (a :class:`RoundTask`), one ``kb/<key>`` ConfigRecord per KB (or anchor
  set, or peer's anchor-keyed PKB) the device does not hold yet, with the blob and its
  SHA-256 (shared blobs such as the SKB are identical records, also sent once), and
  ``weights`` (ArrayRecord) for ``fedavg`` only. A device rejects a KB whose digest does not
  match. Reply: ``metrics`` (MetricRecord: numbers only), ``placement`` (ConfigRecord: ``node``,
  ``host``, where the round ran), optional ``pkb`` (ConfigRecord ``blob``) and ``weights``.
- ``train.decoder`` (stage 2): ``scenario`` and ``task`` (``topology``, ``run-key``).
  Reply: ``metrics``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict

from crlsc_fl.device.device_round import RoundOutcome, RoundTask
from crlsc_fl.kb.knowledge_base import KnowledgeBaseError
from crlsc_fl.scenario.faults import digest

KB_PREFIX = "kb/"
DECODER_MESSAGE = f"{MessageType.TRAIN}.decoder"
StateDict = dict[str, torch.Tensor]


# -- handshake ------------------------------------------------------------------------
def handshake_query(node: int) -> Message:
    return Message(content=RecordDict(), dst_node_id=node, message_type=MessageType.QUERY)


def handshake_reply(query: Message, partition_id: int, num_partitions: int) -> Message:
    node = ConfigRecord({"partition-id": partition_id, "num-partitions": num_partitions})
    return Message(content=RecordDict({"node": node}), reply_to=query)


def partition_of(reply: Message) -> int:
    """The partition id (= device) a node reported in its handshake reply."""
    return int(reply.content.config_records["node"]["partition-id"])  # type: ignore[arg-type]


# -- scenario and task ----------------------------------------------------------------
def scenario_items(msg: Message) -> tuple[tuple[str, Any], ...]:
    """The flat run config a message carries, as sorted items (hashable: the client caches
    the parsed scenario by it)."""
    return tuple(sorted(msg.content.config_records["scenario"].items()))


def task_record(task: RoundTask) -> ConfigRecord:
    return ConfigRecord(
        {
            "topology": task.topology, "server-round": task.server_round, "method": task.method, "dim": task.dim,
            "kb-keys": ",".join(task.kb_keys), "return-pkb": task.return_pkb, "return-weights": task.return_weights,
            "run-key": task.run_key, "state-round": -1 if task.state_round is None else task.state_round,
            "anchor-key": task.anchor_key, "peer-anchor-keys": ",".join(task.peer_anchor_keys),
        }
    )


def task_of(msg: Message) -> RoundTask:
    record = msg.content.config_records["task"]
    keys, peer_keys = str(record["kb-keys"]), str(record["peer-anchor-keys"])
    return RoundTask(
        topology=str(record["topology"]), server_round=int(record["server-round"]), method=str(record["method"]),  # type: ignore[arg-type]
        dim=int(record["dim"]), kb_keys=tuple(keys.split(",")) if keys else (),  # type: ignore[arg-type]
        return_pkb=bool(record["return-pkb"]), return_weights=bool(record["return-weights"]),
        run_key=str(record["run-key"]),
        state_round=None if int(record["state-round"]) < 0 else int(record["state-round"]),  # type: ignore[arg-type]
        anchor_key=str(record["anchor-key"]), peer_anchor_keys=tuple(peer_keys.split(",")) if peer_keys else (),
    )


def state_address(msg: Message) -> tuple[str, str]:
    """(topology, run key) of a train or decoder message: where the device's state lives."""
    task = msg.content.config_records["task"]
    return str(task["topology"]), str(task.get("run-key", ""))


# -- train: server -> device ----------------------------------------------------------
def train_content(
    scenario: dict[str, Any], task: RoundTask, kb_blobs: dict[str, bytes], weights: ArrayRecord | None = None,
    digests: dict[str, str] | None = None,
) -> RecordDict:
    """The train message's content; ``digests`` (default: those of ``kb_blobs``) are what the device checks."""
    content = RecordDict({"scenario": ConfigRecord(scenario), "task": task_record(task)})
    for key, blob in kb_blobs.items():
        content[KB_PREFIX + key] = ConfigRecord({"blob": blob, "sha256": (digests or {}).get(key) or digest(blob)})
    if weights is not None:
        content["weights"] = weights
    return content


def train_message(
    node: int, scenario: dict[str, Any], task: RoundTask, kb_blobs: dict[str, bytes], weights: ArrayRecord | None = None,
    digests: dict[str, str] | None = None,
) -> Message:
    return Message(content=train_content(scenario, task, kb_blobs, weights, digests), dst_node_id=node,
                   message_type=MessageType.TRAIN)


def incoming_kbs(content: RecordDict) -> dict[str, bytes]:
    """The KBs carried by a message, each checked against its digest (else KnowledgeBaseError)."""
    kbs = {}
    for name, record in content.config_records.items():
        if not name.startswith(KB_PREFIX):
            continue
        key, blob = name[len(KB_PREFIX) :], bytes(record["blob"])  # type: ignore[arg-type]
        if digest(blob) != record["sha256"]:
            raise KnowledgeBaseError(
                f"knowledge base {key!r} rejected: its {len(blob)} bytes do not match the SHA-256 sent with it "
                f"({digest(blob)[:12]} != {str(record['sha256'])[:12]}); corrupted in transit"
            )
        kbs[key] = blob
    return kbs


def incoming_weights(content: RecordDict) -> StateDict | None:
    """Encoder weights a message (or reply) carries, if any."""
    if "weights" not in content.array_records:
        return None
    return content.array_records["weights"].to_torch_state_dict()


# -- train: device -> server ----------------------------------------------------------
def reply_content(outcome: RoundOutcome) -> RecordDict:
    content = RecordDict({"metrics": MetricRecord(outcome.metrics)})  # type: ignore[arg-type]
    if outcome.placement:  # strings: a MetricRecord holds numbers only
        content["placement"] = ConfigRecord(outcome.placement)  # type: ignore[arg-type]
    if outcome.pkb is not None:
        content["pkb"] = ConfigRecord({"blob": outcome.pkb})
    if outcome.weights is not None:
        content["weights"] = weights_record(outcome.weights)
    return content


def train_reply(request: Message, outcome: RoundOutcome) -> Message:
    return Message(content=reply_content(outcome), reply_to=request)


def reply_metrics(content: RecordDict) -> dict[str, float]:
    return dict(content.metric_records["metrics"])  # type: ignore[arg-type]


def reply_placement(content: RecordDict) -> dict[str, str]:
    """Where the device's round ran (``node``, ``host``); empty if the reply does not say."""
    if "placement" not in content.config_records:
        return {}
    return {key: str(value) for key, value in content.config_records["placement"].items()}


def reply_row(content: RecordDict) -> dict[str, Any]:
    """A successful train reply's values for its ``metrics.jsonl`` row: metrics and placement."""
    return {**reply_metrics(content), **reply_placement(content)}


def reply_accuracy(reply: Message) -> float | None:
    """A successful train reply's kNN top-1 (None for errors and replies without it)."""
    if reply.has_error() or "metrics" not in reply.content.metric_records:
        return None
    metrics = reply.content.metric_records["metrics"]
    return float(metrics["knn_top1"]) if "knn_top1" in metrics else None  # type: ignore[arg-type]


def reply_pkb(content: RecordDict) -> bytes | None:
    if "pkb" not in content.config_records:
        return None
    return bytes(content.config_records["pkb"]["blob"])  # type: ignore[arg-type]


def reply_weights_nbytes(content: RecordDict) -> int | None:
    """Bytes of the weights a reply uploads (None if it carries none)."""
    return weights_nbytes(content.array_records["weights"]) if "weights" in content.array_records else None


def take_weights(content: RecordDict) -> StateDict:
    """The reply's weights, removed from it so that they can be freed once folded in."""
    state = content.array_records["weights"].to_torch_state_dict()
    del content["weights"]
    return state


# -- weights --------------------------------------------------------------------------
def weights_record(state: StateDict) -> ArrayRecord:
    """One record per weight set: a record shared by many messages is sent once."""
    return ArrayRecord(torch_state_dict=state)


def record_weights(record: ArrayRecord) -> StateDict:
    return record.to_torch_state_dict()


def weights_nbytes(record: ArrayRecord) -> int:
    return int(sum(len(array.data) for array in record.values()))


def no_arrays() -> ArrayRecord:
    """Flower's ``Strategy.start`` wants initial arrays; knowledge transfer has none."""
    return ArrayRecord()


def mean_metrics(rows: Iterable[dict[str, float]], keys: tuple[str, ...]) -> MetricRecord | None:
    """Flower's round summary: the mean of ``keys`` over the rows (None without rows)."""
    rows = list(rows)
    if not rows:
        return None
    return MetricRecord({k: float(np.mean([r[k] for r in rows])) for k in keys})


# -- stage 2: train.decoder -----------------------------------------------------------
def decoder_message(node: int, scenario: dict[str, Any], topology: str, run_key: str) -> Message:
    content = RecordDict({"scenario": ConfigRecord(scenario), "task": ConfigRecord({"topology": topology, "run-key": run_key})})
    return Message(content=content, dst_node_id=node, message_type=DECODER_MESSAGE)


def metrics_reply(request: Message, metrics: dict[str, float]) -> Message:
    """A reply that carries only ``metrics`` (stage 2)."""
    return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=request)  # type: ignore[arg-type]
