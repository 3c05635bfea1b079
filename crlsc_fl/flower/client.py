"""The CRLSC ClientApp: one simulated device per node (its shard = its ``partition-id``).

Message kinds (their records: :mod:`crlsc_fl.codec`):
- ``query``: the handshake; replies with the node's partition id.
- ``train``: one round of local training guided by the KBs (or weights) it carries, then
  kNN evaluation, and the device's PKB / weights when asked (see ``RoundTask``).
- ``train.decoder``: stage 2, a VQ-VAE decoder trained on the frozen encoder (PSNR/SSIM).

Device state stays on the device (:mod:`crlsc_fl.device.device_store`).
"""

from __future__ import annotations

from functools import lru_cache

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from crlsc_fl import codec
from crlsc_fl.data.paths import state_root
from crlsc_fl.device.device_round import run_device_round
from crlsc_fl.device.device_store import DeviceStore
from crlsc_fl.device.stage2_decoder import device_decoder_metrics
from crlsc_fl.scenario.config import ScenarioConfig, from_flat

app = ClientApp()


@lru_cache(maxsize=2)
def _scenario(items: tuple) -> ScenarioConfig:
    return from_flat(dict(items))


def scenario_of(msg: Message) -> ScenarioConfig:
    """The message's scenario, parsed once per run config (every message carries it)."""
    return _scenario(codec.scenario_items(msg))


def partition_id(context: Context) -> int:
    return int(context.node_config["partition-id"])


def stored_state(msg: Message, context: Context) -> DeviceStore:
    """The device's store for the message's topology (and run key: the first run's id when resumed)."""
    topology, run_key = codec.state_address(msg)
    return DeviceStore(state_root(context.node_config), run_key or context.run_id, topology, partition_id(context))


@app.query()
def handshake(msg: Message, context: Context) -> Message:
    return codec.handshake_reply(msg, partition_id(context), int(context.node_config["num-partitions"]))


@app.train()
def train(msg: Message, context: Context) -> Message:
    cfg = scenario_of(msg)
    task = codec.task_of(msg)
    outcome = run_device_round(cfg, partition_id(context), task, stored_state(msg, context), codec.incoming_kbs(msg.content),
                               codec.incoming_weights(msg.content))
    return codec.train_reply(msg, outcome)


@app.train("decoder")
def train_decoder(msg: Message, context: Context) -> Message:
    metrics = device_decoder_metrics(scenario_of(msg), partition_id(context), stored_state(msg, context))
    return codec.metrics_reply(msg, metrics)
