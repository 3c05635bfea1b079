"""The CRLSC ClientApp: one simulated device per node (its shard = its ``partition-id``).

Message kinds:
- ``query``: the handshake; replies with the node's partition id.
- ``train``: one round of local training guided by the KBs (or weights) it carries, then
  kNN evaluation, and the device's PKB / weights when asked (see ``RoundTask``).
- ``train.decoder``: stage 2, a VQ-VAE decoder trained on the frozen encoder (PSNR/SSIM).
- ``evaluate``: kNN evaluation of the device's stored encoder for a topology.

Device state stays on the device (:mod:`crlsc_fl.federation.device_store`).
"""

from __future__ import annotations

from functools import lru_cache

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from crlsc_fl.config import ScenarioConfig, from_flat
from crlsc_fl.federation.device_round import evaluate_encoder, run_device_round
from crlsc_fl.federation.device_store import DeviceStore, state_root
from crlsc_fl.federation.stage2_phase import decoder_reply, device_decoder_metrics
from crlsc_fl.federation.records import incoming_kbs, incoming_weights, reply_content, task_from_record
from crlsc_fl.models.encoders import load_encoder

app = ClientApp()


@lru_cache(maxsize=2)
def _scenario(items: tuple) -> ScenarioConfig:
    return from_flat(dict(items))


def scenario_of(msg: Message) -> ScenarioConfig:
    return _scenario(tuple(sorted(msg.content.config_records["scenario"].items())))


def partition_id(context: Context) -> int:
    return int(context.node_config["partition-id"])


def stored_state(msg: Message, context: Context) -> DeviceStore:
    """The device's store for the message's topology (and run key: the first run's id when resumed)."""
    task = msg.content.config_records["task"]
    run_key = str(task.get("run-key", "")) or context.run_id
    return DeviceStore(state_root(context.node_config), run_key, str(task["topology"]), partition_id(context))


@app.query()
def handshake(msg: Message, context: Context) -> Message:
    node = ConfigRecord({"partition-id": partition_id(context), "num-partitions": int(context.node_config["num-partitions"])})
    return Message(content=RecordDict({"node": node}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    cfg = scenario_of(msg)
    task = task_from_record(msg.content.config_records["task"])
    device = partition_id(context)
    store = DeviceStore(state_root(context.node_config), task.run_key or context.run_id, task.topology, device)
    outcome = run_device_round(cfg, device, task, store, incoming_kbs(msg.content), incoming_weights(msg.content))
    return Message(content=reply_content(outcome), reply_to=msg)


@app.train("decoder")
def train_decoder(msg: Message, context: Context) -> Message:
    cfg = scenario_of(msg)
    device = partition_id(context)
    return Message(content=decoder_reply(device_decoder_metrics(cfg, device, stored_state(msg, context))), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    cfg = scenario_of(msg)
    device = partition_id(context)
    store = stored_state(msg, context)
    knn = evaluate_encoder(cfg, load_encoder(store.encoder_file), device)
    return Message(content=RecordDict({"metrics": MetricRecord({f"knn_{k}": v for k, v in knn.items()})}), reply_to=msg)
