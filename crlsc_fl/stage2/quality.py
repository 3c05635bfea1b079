"""Image-quality and size measures for the semantic link (paper sec. 4.3 shows reconstructions;
we quantify them): PSNR, SSIM, and the PNG / JPEG byte size of the same images.

- PSNR = 10 log10(1 / MSE) per image, images in [0, 1], then averaged over images.
- SSIM (Wang et al., 2004): 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, data
  range 1, computed per colour channel over the valid region and averaged; this matches
  ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, channel_axis=-1, data_range=1)``.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch

SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03
JPEG_QUALITY = 75


def _check_pair(images: torch.Tensor, targets: torch.Tensor) -> None:
    if images.shape != targets.shape or images.ndim != 4:
        raise ValueError(f"expected two (B, C, H, W) batches of one shape, got {tuple(images.shape)} and {tuple(targets.shape)}")


def psnr(images: torch.Tensor, targets: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Per-image PSNR in dB, (B,), for images in [0, 1] (eps caps identical images at 100 dB)."""
    _check_pair(images, targets)
    mse = ((images.double() - targets.double()) ** 2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse.clamp(min=eps))


def _gaussian_kernel() -> torch.Tensor:
    coords = torch.arange(SSIM_WINDOW, dtype=torch.float64) - SSIM_WINDOW // 2
    g = torch.exp(-(coords**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def _valid_filter_matrix(size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(size - 10, size) matrix M with (M @ v) = valid 1-D Gaussian filtering of v."""
    g = _gaussian_kernel().to(dtype=dtype, device=device)
    out = size - SSIM_WINDOW + 1
    rows = torch.zeros(out, size, dtype=dtype, device=device)
    for i in range(out):
        rows[i, i : i + SSIM_WINDOW] = g
    return rows


def _blur(t: torch.Tensor) -> torch.Tensor:
    """Valid Gaussian filtering of every plane as M_h @ t @ M_w^T (separable; matrix products
    are much faster on CPU than thousands of single-channel convolutions)."""
    m_h = _valid_filter_matrix(t.shape[-2], t.dtype, t.device)
    m_w = _valid_filter_matrix(t.shape[-1], t.dtype, t.device)
    return m_h @ t @ m_w.T


def ssim(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM, (B,), for images in [0, 1]; see the module docstring for the constants."""
    _check_pair(images, targets)
    if min(images.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(images.shape[-2:])}")
    x, y = images.double(), targets.double()
    mu_x, mu_y, xx, yy, xy = _blur(torch.cat([x, y, x * x, y * y, x * y], dim=1)).chunk(5, dim=1)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(1)


def encoded_bytes(images: np.ndarray, fmt: str) -> np.ndarray:
    """Byte size of each uint8 (N, H, W, 3) image saved by PIL as ``png`` or ``jpeg`` (quality 75)."""
    from PIL import Image

    options: dict[str, dict[str, Any]] = {"png": {"format": "PNG", "optimize": True}, "jpeg": {"format": "JPEG", "quality": JPEG_QUALITY}}
    if fmt not in options:
        raise ValueError(f"unknown image format {fmt!r}; valid: {', '.join(options)}")
    sizes = np.empty(len(images), dtype=np.int64)
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, **options[fmt])
        sizes[i] = buffer.tell()
    return sizes
