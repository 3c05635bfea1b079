"""Decoder: five upsampling residual blocks of three ConvTranspose2d; output shape = input shape."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from crlsc_fl.stage2.decoder import ReconstructionDecoder, upsampling_steps


@pytest.mark.parametrize("map_size, image_size", [(1, 32), (2, 32), (4, 32), (8, 32), (32, 32), (3, 96), (6, 96)])
def test_output_shape_equals_image_shape(map_size: int, image_size: int) -> None:
    decoder = ReconstructionDecoder(in_channels=16, map_size=map_size, image_size=image_size, base_width=16, min_width=8)
    with torch.no_grad():
        out = decoder(torch.randn(2, 16, map_size, map_size))
    assert out.shape == (2, 3, image_size, image_size)
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0


@pytest.mark.parametrize("map_size, steps", [(1, 5), (2, 4), (4, 3), (8, 2), (16, 1), (32, 0)])
def test_five_blocks_of_three_transposed_convolutions(map_size: int, steps: int) -> None:
    decoder = ReconstructionDecoder(in_channels=8, map_size=map_size, image_size=32, base_width=8, min_width=8)
    assert upsampling_steps(map_size, 32) == steps
    assert len(decoder.blocks) == 5
    for block in decoder.blocks:
        assert sum(isinstance(m, nn.ConvTranspose2d) for m in block.body) == 3
    strides = [block.body[0].stride[0] for block in decoder.blocks]
    assert strides == [1] * (5 - steps) + [2] * steps  # size-keeping blocks first, on the small map


def test_gradients_reach_every_block() -> None:
    decoder = ReconstructionDecoder(in_channels=8, map_size=2, image_size=32, base_width=8, min_width=8)
    decoder(torch.randn(2, 8, 2, 2)).mean().backward()
    assert all(p.grad is not None for p in decoder.parameters())


@pytest.mark.parametrize("map_size, image_size", [(3, 32), (1, 64), (4, 2), (0, 32)])
def test_impossible_sizes_fail_clearly(map_size: int, image_size: int) -> None:
    with pytest.raises(ValueError, match=f"a {map_size}x{map_size} feature map cannot be decoded to {image_size}x{image_size}"):
        ReconstructionDecoder(in_channels=8, map_size=map_size, image_size=image_size)


def test_wrong_input_shape() -> None:
    decoder = ReconstructionDecoder(in_channels=8, map_size=2, image_size=32, base_width=8)
    with pytest.raises(ValueError, match=r"decoder expects \(B, 8, 2, 2\)"):
        decoder(torch.randn(1, 8, 4, 4))
