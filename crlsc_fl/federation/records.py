"""Packing tasks, knowledge bases, weights and metrics into Flower records and back.

Message layout (server -> device): ``scenario`` (the flat run config; identical for all
devices, so Flower sends it once), ``task`` (a :class:`RoundTask`), one ``kb/<key>``
ConfigRecord per KB the device does not hold yet (shared blobs such as the SKB are
identical records, also sent once), and ``weights`` (ArrayRecord) for ``fedavg`` only.
Reply: ``metrics`` (MetricRecord), optional ``pkb`` and ``weights``.
"""

from __future__ import annotations

from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from crlsc_fl.federation.device_round import RoundOutcome, RoundTask

KB_PREFIX = "kb/"


def task_record(task: RoundTask) -> ConfigRecord:
    return ConfigRecord(
        {
            "topology": task.topology, "server-round": task.server_round, "method": task.method, "dim": task.dim,
            "kb-keys": ",".join(task.kb_keys), "return-pkb": task.return_pkb, "return-weights": task.return_weights,
        }
    )


def task_from_record(record: ConfigRecord) -> RoundTask:
    keys = str(record["kb-keys"])
    return RoundTask(
        topology=str(record["topology"]), server_round=int(record["server-round"]), method=str(record["method"]),
        dim=int(record["dim"]), kb_keys=tuple(keys.split(",")) if keys else (),
        return_pkb=bool(record["return-pkb"]), return_weights=bool(record["return-weights"]),
    )


def blob_record(blob: bytes) -> ConfigRecord:
    return ConfigRecord({"blob": blob})


def request_content(
    scenario: dict[str, Any], task: RoundTask, kb_blobs: dict[str, bytes], weights: ArrayRecord | None = None
) -> RecordDict:
    content = RecordDict({"scenario": ConfigRecord(scenario), "task": task_record(task)})
    for key, blob in kb_blobs.items():
        content[KB_PREFIX + key] = blob_record(blob)
    if weights is not None:
        content["weights"] = weights
    return content


def incoming_kbs(content: RecordDict) -> dict[str, bytes]:
    return {
        name[len(KB_PREFIX) :]: bytes(record["blob"])  # type: ignore[arg-type]
        for name, record in content.config_records.items()
        if name.startswith(KB_PREFIX)
    }


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
