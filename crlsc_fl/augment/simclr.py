"""SimCLR's augmentation set (paper sec. 3.1, "Data Augmentation"), applied to whole batches.

Random resized crop + horizontal flip (one affine ``grid_sample``), colour jitter
(brightness, contrast, saturation, hue; applied with probability ``jitter_p``), random
grayscale and Gaussian blur, all vectorised over the batch: per-sample parameters are
drawn as tensors, so there is no per-image Python or PIL work on the CPU.

The images may be on any device; the parameters are always drawn from the (CPU) generator
and then moved to the images' device, so one seed gives the same views on the CPU and on a
GPU (up to the GPU's arithmetic). On the CPU the moves are no-ops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_GRAY = torch.tensor([0.299, 0.587, 0.114])
# RGB <-> YIQ: hue is a rotation of the (I, Q) chroma plane.
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


@dataclass(frozen=True)
class AugmentConfig:
    """SimCLR defaults (Chen et al., 2020) at CIFAR scale."""

    size: int = 32
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    gray_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)


class SimCLRAugment:
    """Callable ``augment(x, generator) -> view`` for x of shape (B, 3, H, W) in [0, 1]."""

    def __init__(self, config: AugmentConfig | None = None) -> None:
        self.config = config or AugmentConfig()

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = self.resized_crop_flip(x, generator)
        x = self.color_jitter(x, generator)
        x = self.grayscale(x, generator)
        return self.blur(x, generator).clamp_(0.0, 1.0)

    def _uniform(self, n: int, low: float, high: float, g: torch.Generator | None) -> torch.Tensor:
        return torch.rand(n, generator=g) * (high - low) + low

    def _coin(self, n: int, p: float, g: torch.Generator | None) -> torch.Tensor:
        """(n, 1, 1, 1) booleans, True with probability p: which samples get a transform."""
        return (torch.rand(n, generator=g) < p).view(n, 1, 1, 1)

    def resized_crop_flip(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        c, b = self.config, x.shape[0]
        area = self._uniform(b, *c.crop_scale, g)
        log_ratio = self._uniform(b, math.log(c.crop_ratio[0]), math.log(c.crop_ratio[1]), g)
        ratio = torch.exp(log_ratio)
        # Width/height as fractions of the image (affine_grid's unit is half the image).
        w = torch.sqrt(area * ratio).clamp(max=1.0)
        h = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = (torch.rand(b, generator=g) * 2 - 1) * (1 - w)
        cy = (torch.rand(b, generator=g) * 2 - 1) * (1 - h)
        flip = torch.where(torch.rand(b, generator=g) < c.flip_p, -1.0, 1.0)
        # affine_grid's sampling grid for theta = [[w * flip, 0, cx], [0, h, cy]], built by
        # broadcasting instead of its batched matmul over every pixel (the same grid, cheaper)
        device = x.device
        base = ((torch.arange(c.size, dtype=torch.float32) * 2 + 1) / c.size - 1).to(device)  # pixel centres in [-1, 1]
        grid_x = (w * flip).to(device).view(b, 1, 1) * base.view(1, 1, -1) + cx.to(device).view(b, 1, 1)
        grid_y = h.to(device).view(b, 1, 1) * base.view(1, -1, 1) + cy.to(device).view(b, 1, 1)
        grid = torch.stack(torch.broadcast_tensors(grid_x, grid_y), dim=-1)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def color_jitter(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        c, b, device = self.config, x.shape[0], x.device
        view = (b, 1, 1, 1)
        weights = _GRAY.to(device).view(1, 3, 1, 1)
        jittered = x * self._uniform(b, 1 - c.brightness, 1 + c.brightness, g).view(view).to(device)
        mean = (jittered * weights).sum(1, keepdim=True).mean((2, 3), keepdim=True)
        jittered = (jittered - mean) * self._uniform(b, 1 - c.contrast, 1 + c.contrast, g).view(view).to(device) + mean
        gray = (jittered * weights).sum(1, keepdim=True)
        jittered = (jittered - gray) * self._uniform(b, 1 - c.saturation, 1 + c.saturation, g).view(view).to(device) + gray
        angle = self._uniform(b, -c.hue, c.hue, g) * 2 * math.pi
        cos, sin = torch.cos(angle), torch.sin(angle)
        rotation = torch.zeros(b, 3, 3)
        rotation[:, 0, 0] = 1.0
        rotation[:, 1, 1], rotation[:, 1, 2], rotation[:, 2, 1], rotation[:, 2, 2] = cos, -sin, sin, cos
        transform = (_YIQ2RGB @ rotation @ _RGB2YIQ).to(device)  # (b, 3, 3)
        jittered = torch.einsum("bij,bjhw->bihw", transform, jittered.clamp(0, 1))
        return torch.where(self._coin(b, c.jitter_p, g).to(device), jittered.clamp(0, 1), x)

    def grayscale(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        gray = (x * _GRAY.to(x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
        return torch.where(self._coin(x.shape[0], self.config.gray_p, g).to(x.device), gray, x)

    def blur(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        c = self.config
        b, ch, height, width = x.shape
        # Kernel about 10% of the image side, odd (SimCLR), at least 3.
        radius = max(1, int(0.1 * c.size) // 2)
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
        sigma = self._uniform(b, *c.blur_sigma, g)
        kernel = torch.exp(-(offsets.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
        kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(ch, 0).to(x.device)  # (b*ch, k)
        flat = x.reshape(1, b * ch, height, width)
        flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
        flat = F.conv2d(flat, kernel.view(b * ch, 1, 1, -1), groups=b * ch)
        flat = F.conv2d(flat, kernel.view(b * ch, 1, -1, 1), groups=b * ch)
        blurred = flat.view(b, ch, height, width)
        return torch.where(self._coin(b, c.blur_p, g).to(x.device), blurred, x)
