"""Packing tasks, knowledge bases, weights and metrics into Flower records and back.

Message layout (server -> device): ``scenario`` (the flat run config; identical for all
devices, so Flower sends it once), ``task`` (a :class:`RoundTask`), one ``kb/<key>``
ConfigRecord per KB (or anchor set, or peer's anchor-keyed PKB) the device does not hold yet, with the blob and its
SHA-256 (shared blobs such as the SKB are identical records, also sent once), and ``weights``
(ArrayRecord) for ``fedavg`` only. A device rejects a KB whose digest does not match.
Reply: ``metrics`` (MetricRecord), optional ``pkb`` and ``weights``.
"""

from __future__ import annotations

from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from crlsc_fl.federation.device_round import RoundOutcome, RoundTask
from crlsc_fl.federation.faults import digest
from crlsc_fl.kb.knowledge_base import KnowledgeBaseError

KB_PREFIX = "kb/"


def task_record(task: RoundTask) -> ConfigRecord:
    return ConfigRecord(
        {
            "topology": task.topology, "server-round": task.server_round, "method": task.method, "dim": task.dim,
            "kb-keys": ",".join(task.kb_keys), "return-pkb": task.return_pkb, "return-weights": task.return_weights,
            "run-key": task.run_key, "state-round": -1 if task.state_round is None else task.state_round,
            "anchor-key": task.anchor_key, "peer-anchor-keys": ",".join(task.peer_anchor_keys),
        }
    )


def task_from_record(record: ConfigRecord) -> RoundTask:
    keys, peer_keys = str(record["kb-keys"]), str(record["peer-anchor-keys"])
    return RoundTask(
        topology=str(record["topology"]), server_round=int(record["server-round"]), method=str(record["method"]),
        dim=int(record["dim"]), kb_keys=tuple(keys.split(",")) if keys else (),
        return_pkb=bool(record["return-pkb"]), return_weights=bool(record["return-weights"]),
        run_key=str(record["run-key"]), state_round=None if int(record["state-round"]) < 0 else int(record["state-round"]),
        anchor_key=str(record["anchor-key"]), peer_anchor_keys=tuple(peer_keys.split(",")) if peer_keys else (),
    )


def blob_record(blob: bytes) -> ConfigRecord:
    return ConfigRecord({"blob": blob})


def request_content(
    scenario: dict[str, Any], task: RoundTask, kb_blobs: dict[str, bytes], weights: ArrayRecord | None = None,
    digests: dict[str, str] | None = None,
) -> RecordDict:
    """The train message; ``digests`` (default: those of ``kb_blobs``) are what the device checks."""
    content = RecordDict({"scenario": ConfigRecord(scenario), "task": task_record(task)})
    for key, blob in kb_blobs.items():
        content[KB_PREFIX + key] = ConfigRecord({"blob": blob, "sha256": (digests or {}).get(key) or digest(blob)})
    if weights is not None:
        content["weights"] = weights
    return content


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


def incoming_weights(content: RecordDict) -> dict[str, torch.Tensor] | None:
    if "weights" not in content.array_records:
        return None
    return content.array_records["weights"].to_torch_state_dict()


def reply_content(outcome: RoundOutcome) -> RecordDict:
    content = RecordDict({"metrics": MetricRecord(outcome.metrics)})
    if outcome.pkb is not None:
        content["pkb"] = blob_record(outcome.pkb)
    if outcome.weights is not None:
        content["weights"] = ArrayRecord(torch_state_dict=outcome.weights)
    return content


def weights_nbytes(record: ArrayRecord) -> int:
    return int(sum(len(array.data) for array in record.values()))
