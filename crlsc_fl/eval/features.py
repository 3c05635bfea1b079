"""Run a frozen local encoder over uint8 images in batches, on the encoder's device."""

from __future__ import annotations

import numpy as np
import torch

from crlsc_fl.accelerator import module_device
from crlsc_fl.models.encoders import LocalEncoder

FEATURE_KINDS = ("backbone", "projection")


def images_to_tensor(images: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1], on ``device`` (default: the CPU).
    The pixels travel as uint8 (a quarter of the float bytes) and are converted there."""
    # np.require copies read-only (memory-mapped) arrays, which torch cannot wrap safely
    pixels = torch.from_numpy(np.require(images, requirements=["C", "W"]))
    if device is not None:
        pixels = pixels.to(device)  # the same tensor when it is already there
    return pixels.permute(0, 3, 1, 2).float().div_(255)


@torch.no_grad()
def encode_images(encoder: LocalEncoder, images: np.ndarray, kind: str = "backbone", batch_size: int = 512) -> torch.Tensor:
    """Features of every image, (N, F) float32 on the CPU: pooled backbone features or the
    projection q, computed in batches wherever the encoder is."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; valid: {', '.join(FEATURE_KINDS)}")
    was_training = encoder.training
    encoder.eval()
    device = module_device(encoder)
    forward = encoder.backbone_features if kind == "backbone" else encoder.forward
    # inputs in the encoder's layout (a channels_last encoder trained with train.channels-last)
    layout = torch.channels_last if encoder.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last) else None
    out = []
    for i in range(0, len(images), batch_size):
        x = images_to_tensor(images[i : i + batch_size], device)
        out.append(forward(x.contiguous(memory_format=layout) if layout is not None else x))
    encoder.train(was_training)
    return torch.cat(out).cpu()
