"""Stage 2 in the federation: devices train a VQ-VAE decoder on their frozen encoder.

After a topology's stage-1 rounds, ``stage2.devices`` devices (a seeded sample, the same
for every topology) receive a ``train.decoder`` message: each trains the codebook and
decoder on its own images (paper sec. 3.2, eq. 4) and reports PSNR/SSIM over the
scenario's channel. Nothing but the request and the metrics crosses the network.
"""

from __future__ import annotations

import time
from logging import INFO
from typing import Any

import numpy as np
from flwr.common.logger import log
from flwr.serverapp import Grid

from crlsc_fl.accelerator import resolve_device
from crlsc_fl.config import ScenarioConfig
from crlsc_fl.federation.device_store import DeviceStore
from crlsc_fl.federation.devices import federated_data, plan_devices, sample_devices
from crlsc_fl.federation.failures import error_fields
from crlsc_fl.federation.run_dir import RunDirectory
from crlsc_fl.flower import codec


def stage2_devices(cfg: ScenarioConfig) -> list[int]:
    """The devices that train a decoder: the run's device sample (the same in every topology)."""
    return sample_devices(plan_devices(cfg), cfg.stage2.devices, cfg.scenario.seed)


def device_decoder_metrics(cfg: ScenarioConfig, device: int, store: DeviceStore) -> dict[str, float]:
    """Client side: train this device's decoder on its frozen encoder (on
    ``devices.accelerator``); scalar metrics."""
    from crlsc_fl.stage2 import train_device_decoder

    s = cfg.stage2
    images, _ = federated_data(cfg).device_images(device)
    train, held_out = images[: s.train_samples], images[s.train_samples : s.train_samples + s.eval_samples]
    return train_device_decoder(
        store.encoder_file, train, held_out if len(held_out) else train,
        s.link_config(cfg.scenario.seed),
        channel=s.channel, channel_params=s.channel_params(), device=resolve_device(cfg.devices.accelerator),
    )


def run_stage2(
    grid: Grid, cfg: ScenarioConfig, topology: str, node_ids: dict[int, int], arch_of: dict[int, str], run_dir: RunDirectory,
    run_key: str = "",
) -> list[dict[str, Any]]:
    """Server side: ask the sampled devices to train decoders; append rows to ``stage2.jsonl``."""
    devices = stage2_devices(cfg)
    if not devices:
        return []
    start = time.time()
    scenario = cfg.to_flat()
    messages = [codec.decoder_message(node_ids[d], scenario, topology, run_key) for d in devices]
    device_of = {node: device for device, node in node_ids.items()}
    rows = []
    for reply in grid.send_and_receive(messages, timeout=cfg.scenario.reply_timeout):
        device = device_of[reply.metadata.src_node_id]
        row: dict[str, Any] = {"topology": topology, "device": device, "arch": arch_of[device], "channel": cfg.stage2.channel}
        if reply.has_error():
            row.update(error_fields(str(reply.error.reason), reply.error.code))
        else:
            row.update(codec.reply_metrics(reply.content))
        rows.append(row)
    run_dir.append_stage2(rows)
    good = [r for r in rows if "error" not in r]
    if good:
        log(INFO, "[%s] stage 2 on %d devices: PSNR %.2f dB, SSIM %.3f (%.0f s)", topology, len(good),
            np.mean([r["psnr"] for r in good]), np.mean([r["ssim"] for r in good]), time.time() - start)
    return rows
