"""Frozen-encoder features in batches, in the encoder's own memory layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crlsc_fl.data.synthetic import make_synthetic_images
from crlsc_fl.eval.features import encode_images
from crlsc_fl.models.encoders import build_encoder


@pytest.mark.parametrize("kind", ["backbone", "projection"])
def test_channels_last_encoder_gives_the_same_features(kind: str) -> None:
    images = make_synthetic_images(20, image_size=16, seed=0)[0]
    torch.manual_seed(0)
    encoder = build_encoder("resnet18", dim=8, hidden_dim=8)
    expected = encode_images(encoder, images, kind=kind, batch_size=7)
    encoder = encoder.to(memory_format=torch.channels_last)
    got = encode_images(encoder, images, kind=kind, batch_size=7)
    assert got.shape == expected.shape == (20, 512 if kind == "backbone" else 8)
    assert torch.allclose(got, expected, atol=1e-4)
    assert encoder.training  # restored


def test_bad_feature_kind() -> None:
    with pytest.raises(ValueError, match="unknown feature kind 'pixels'; valid: backbone, projection"):
        encode_images(build_encoder("resnet18", dim=8, hidden_dim=8), np.zeros((1, 16, 16, 3), np.uint8), kind="pixels")
