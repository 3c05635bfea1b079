"""Frozen-encoder features for stage 2 (paper sec. 3.2 and 4.2), computed once and cached.

Probes train on pooled features of a frozen encoder; recomputing them for every probe and
epoch would dominate the cost, so :func:`cached_features` stores them on disk under
``cache_dir("features")``. The cache key hashes the encoder's weights and spec, the dataset
name and split, the feature layer and the image bytes themselves (so a subset, or another
copy of the data, never hits a stale entry), not the device the features were computed on.

Features are computed wherever the encoder is (:func:`load_frozen_encoder` places it); the
pooled features come back to the CPU as numpy arrays.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import numpy as np
import torch

from crlsc_fl.accelerator import module_device
from crlsc_fl.data.paths import cache_dir
from crlsc_fl.eval.features import images_to_tensor
from crlsc_fl.models.encoders import FEATURE_LAYERS, LocalEncoder, load_encoder

ImagesLike = np.ndarray | torch.Tensor


def as_image_tensor(images: ImagesLike, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 (N, H, W, 3) arrays or float (N, 3, H, W) tensors in [0, 1] -> float (N, 3, H, W),
    on ``device`` (default: arrays on the CPU, tensors where they are)."""
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"image arrays must be (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
        return images_to_tensor(images, device)
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(f"image tensors must be float (N, 3, H, W) in [0, 1], got {tuple(images.shape)} {images.dtype}")
    return images.float() if device is None else images.to(device).float()


def load_frozen_encoder(
    path: str | os.PathLike[str], arch: str | None = None, stem: str | None = None,
    device: torch.device | str | None = None,
) -> LocalEncoder:
    """Load a saved encoder for stage 2: eval mode, no gradients, on ``device`` (default: the CPU).

    A file of another architecture (``arch``) or stem (``stem``), or whose weights do not fit
    its own spec, fails with a ValueError that names the file and both values.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"encoder file {path} does not exist")
    try:
        encoder = load_encoder(path, expected_arch=arch)
    except RuntimeError as err:  # load_state_dict: weights of another shape than the spec says
        raise ValueError(f"encoder file {path} does not match its saved architecture: {err}") from err
    if stem is not None and encoder.stem != stem:
        raise ValueError(f"encoder file {path} holds a {encoder.stem!r}-stem encoder, but stem {stem!r} was chosen")
    encoder.eval().requires_grad_(False)
    return encoder if device is None else encoder.to(device)


def batches(images: ImagesLike, batch_size: int, device: torch.device | str | None = None) -> Iterator[torch.Tensor]:
    """Float (B, 3, H, W) batches on ``device``; uint8 arrays are converted one batch at a time
    (there) to save memory."""
    for start in range(0, len(images), batch_size):
        yield as_image_tensor(images[start : start + batch_size], device)


@torch.no_grad()
def extract_feature_maps(encoder: LocalEncoder, images: ImagesLike, layer: str, batch_size: int = 256) -> torch.Tensor:
    """z_e(x): the frozen encoder's (N, C, h, w) map after ``layer``, in eval mode, computed
    and returned on the encoder's device."""
    if layer not in FEATURE_LAYERS:
        raise ValueError(f"unknown feature layer {layer!r}; valid: {', '.join(FEATURE_LAYERS)}")
    was_training = encoder.training
    encoder.eval()  # frozen: batch-norm uses its running statistics, never this batch's
    try:
        return torch.cat([encoder.feature_map(x, layer) for x in batches(images, batch_size, module_device(encoder))])
    finally:
        encoder.train(was_training)


def extract_features(encoder: LocalEncoder, images: ImagesLike, layer: str = "layer4", batch_size: int = 256) -> np.ndarray:
    """Globally average-pooled features after ``layer``, float32 (N, C); layer4 = backbone features."""
    chunks = [
        extract_feature_maps(encoder, x, layer, batch_size).mean(dim=(2, 3)).cpu().numpy()
        for x in (images[s : s + batch_size] for s in range(0, len(images), batch_size))
    ]
    return np.concatenate(chunks).astype(np.float32)


def encoder_fingerprint(encoder: LocalEncoder) -> str:
    """SHA-1 of the encoder's spec and every tensor of its state dict (names, shapes, bytes)."""
    digest = hashlib.sha1(repr(sorted(encoder.spec().items())).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def features_cache_key(encoder: LocalEncoder, dataset: str, split: str, layer: str, images: ImagesLike) -> str:
    images_np = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    images_hash = hashlib.sha1(np.ascontiguousarray(images_np).tobytes()).hexdigest()
    parts = (encoder_fingerprint(encoder), dataset, split, layer, images_np.shape, images_hash)
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:20]


def cached_features(
    encoder: LocalEncoder, images: ImagesLike, dataset: str, split: str, layer: str = "layer4", batch_size: int = 256
) -> np.ndarray:
    """:func:`extract_features`, read from / written to the feature cache."""
    path = cache_dir("features") / f"{dataset}-{split}-{layer}-{features_cache_key(encoder, dataset, split, layer, images)}.npy"
    if path.exists():
        return np.load(path)
    features = extract_features(encoder, images, layer, batch_size)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, features)
    os.replace(tmp, path)  # atomic, so parallel clients never read half a file
    return features
