"""The lightweight reconstruction decoder of the semantic link (paper sec. 4.3).

"Five upsampling residual blocks, with each residual block containing three layers of
transposed convolution layers." The paper decodes to its own image size from a map whose
size it does not state; here the map can be anywhere from 1x1 to image size, so:

- a block *upsamples* (first transposed convolution 4x4, stride 2) or *keeps size*
  (first transposed convolution 3x3, stride 1); the other two are always 3x3, stride 1;
- with image side H and map side h, H / h must be 2^u with u <= 5; the first 5 - u blocks
  keep size and the last u upsample, so there are always five blocks of three
  ConvTranspose2d. The size-keeping blocks come first because they then run on the small
  map, which is far cheaper on CPU than refining at full resolution;
- the width is ``base_width`` up to the first upsampling block and halves at each later
  one (never below ``min_width``), so the high-resolution blocks stay cheap;
- the shortcut is the identity when shape is unchanged, else a nearest-neighbour upsample
  and a 1x1 convolution (a projection, not counted among the three layers);
- a 1x1 convolution and a sigmoid map the last block to RGB in [0, 1], like the inputs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

NUM_BLOCKS = 5
LAYERS_PER_BLOCK = 3


def upsampling_steps(map_size: int, image_size: int) -> int:
    """u with image_size = map_size * 2^u, 0 <= u <= 5; otherwise a clear error."""
    ratio = image_size / map_size if map_size > 0 else 0.0
    steps = round(math.log2(ratio)) if ratio >= 1 else -1
    if not (0 <= steps <= NUM_BLOCKS and map_size * 2**steps == image_size):
        raise ValueError(
            f"a {map_size}x{map_size} feature map cannot be decoded to {image_size}x{image_size} images: "
            f"the image side must be the map side times 2^u, u in [0, {NUM_BLOCKS}] "
            f"(choose another feature layer or encoder stem)"
        )
    return steps


class UpResidualBlock(nn.Module):
    """Three ConvTranspose2d (the first one upsampling x2 when ``upsample``) with a shortcut."""

    def __init__(self, in_channels: int, out_channels: int, upsample: bool) -> None:
        super().__init__()
        first = (
            nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=False)
            if upsample
            else nn.ConvTranspose2d(in_channels, out_channels, 3, padding=1, bias=False)
        )
        self.body = nn.Sequential(
            first, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        shortcut: list[nn.Module] = [nn.Upsample(scale_factor=2, mode="nearest")] if upsample else []
        if in_channels != out_channels:
            shortcut.append(nn.Conv2d(in_channels, out_channels, 1, bias=False))
        self.shortcut = nn.Sequential(*shortcut)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class ReconstructionDecoder(nn.Module):
    """z_q(x) (B, in_channels, h, h) -> images (B, 3, H, H) in [0, 1]; see the module docstring."""

    def __init__(
        self,
        in_channels: int,
        map_size: int,
        image_size: int,
        base_width: int = 128,
        min_width: int = 32,
    ) -> None:
        super().__init__()
        if base_width < 1 or min_width < 1:
            raise ValueError(f"base_width={base_width} and min_width={min_width} must be >= 1")
        self.in_channels, self.map_size, self.image_size = in_channels, map_size, image_size
        steps = upsampling_steps(map_size, image_size)
        blocks, width, channels = [], base_width, in_channels
        for i in range(NUM_BLOCKS):
            upsample = i >= NUM_BLOCKS - steps
            if upsample and i > NUM_BLOCKS - steps:
                width = max(width // 2, min_width)
            blocks.append(UpResidualBlock(channels, width, upsample))
            channels = width
        self.blocks = nn.Sequential(*blocks)
        self.to_rgb = nn.Sequential(nn.Conv2d(channels, 3, 1), nn.Sigmoid())

    def forward(self, z_q: torch.Tensor) -> torch.Tensor:
        if z_q.ndim != 4 or z_q.shape[1:] != (self.in_channels, self.map_size, self.map_size):
            raise ValueError(
                f"decoder expects (B, {self.in_channels}, {self.map_size}, {self.map_size}), got {tuple(z_q.shape)}"
            )
        return self.to_rgb(self.blocks(z_q))
