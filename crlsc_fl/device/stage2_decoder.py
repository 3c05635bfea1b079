"""Stage 2 in the federation, the device side: train a VQ-VAE decoder on the frozen encoder.

A device that receives a ``train.decoder`` message (sent by :mod:`crlsc_fl.flower.stage2_phase`)
trains the codebook and decoder on its own images (paper sec. 3.2, eq. 4) and reports PSNR/SSIM
over the scenario's channel.
"""

from __future__ import annotations

from crlsc_fl.accelerator import resolve_device
from crlsc_fl.device.device_store import DeviceStore
from crlsc_fl.scenario.config import ScenarioConfig
from crlsc_fl.scenario.devices import federated_data


def device_decoder_metrics(cfg: ScenarioConfig, device: int, store: DeviceStore) -> dict[str, float]:
    """Client side: train this device's decoder on its frozen encoder (on
    ``devices.accelerator``); scalar metrics."""
    from crlsc_fl.stage2 import train_device_decoder

    s = cfg.stage2
    images, _ = federated_data(cfg.data, cfg.devices.num_devices, cfg.scenario.seed).device_images(device)
    train, held_out = images[: s.train_samples], images[s.train_samples : s.train_samples + s.eval_samples]
    return train_device_decoder(
        store.encoder_file, train, held_out if len(held_out) else train,
        s.link_config(cfg.scenario.seed),
        channel=s.channel, channel_params=s.channel_params(), device=resolve_device(cfg.devices.accelerator),
    )
