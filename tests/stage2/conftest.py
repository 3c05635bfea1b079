"""Shared fixtures for the stage-2 tests: one thread, a private cache, tiny encoders and data.

The images are generated here (not by ``crlsc_fl.data.synthetic``, whose design serves the
stage-1 tests): each class has its own colour, each image a random brightness gradient and a
little noise, so a random encoder separates the classes and a decoder can learn the colours.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crlsc_fl.models.encoders import LocalEncoder, build_encoder

torch.set_num_threads(1)  # the test machine is shared


def coloured_images(num: int, seed: int, classes: int = 10, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (num, size, size, 3), labels): class colour + per-image gradient + noise."""
    palette = np.random.default_rng(123).uniform(0.15, 0.85, size=(classes, 3))
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(num) % classes)
    yy, xx = np.meshgrid(np.linspace(-0.5, 0.5, size), np.linspace(-0.5, 0.5, size), indexing="ij")
    slopes = rng.uniform(-0.3, 0.3, size=(num, 2, 1, 1))
    gradient = slopes[:, 0] * xx + slopes[:, 1] * yy
    pixels = palette[labels][:, None, None, :] + gradient[..., None] + rng.normal(0, 0.02, size=(num, size, size, 3))
    return np.clip(pixels * 255, 0, 255).astype(np.uint8), labels.astype(np.int64)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Never write features or decoded data into the user's cache."""
    monkeypatch.setenv("CRLSC_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def encoder() -> LocalEncoder:
    torch.manual_seed(0)
    return build_encoder("resnet18", dim=32, stem="imagenet", hidden_dim=32).eval()


@pytest.fixture(scope="session")
def labelled_images() -> tuple[np.ndarray, np.ndarray]:
    return coloured_images(96, seed=3)


@pytest.fixture(scope="session")
def images(labelled_images) -> np.ndarray:
    return labelled_images[0]
