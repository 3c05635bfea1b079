"""Stage 2 in the federation, the server side: ask the sampled devices to train their decoders.

After a topology's stage-1 rounds, ``stage2.devices`` devices (a seeded sample, the same
for every topology) receive a ``train.decoder`` message: each trains the codebook and
decoder on its own images (paper sec. 3.2, eq. 4) and reports PSNR/SSIM over the
scenario's channel. Nothing but the request and the metrics crosses the network. The device's
side is :mod:`crlsc_fl.device.stage2_decoder`.
"""

from __future__ import annotations

import time
from logging import INFO
from typing import Any

import numpy as np
from flwr.common.logger import log
from flwr.serverapp import Grid

from crlsc_fl import codec
from crlsc_fl.bookkeeping.failures import error_fields
from crlsc_fl.outputs.run_dir import RunDirectory
from crlsc_fl.scenario.config import ScenarioConfig
from crlsc_fl.scenario.devices import plan_devices, sample_devices


def stage2_devices(cfg: ScenarioConfig) -> list[int]:
    """The devices that train a decoder: the run's device sample (the same in every topology)."""
    return sample_devices(plan_devices(cfg.devices, cfg.scenario.seed), cfg.stage2.devices, cfg.scenario.seed)


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
