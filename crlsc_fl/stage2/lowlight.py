"""The low-light robustness test of the paper (sec. 4.3, figs. 4-5).

The paper "subject[s] the original images to low-light conditions" and sends them through
the trained link, but gives no parameters. We darken with a gamma curve followed by a
brightness gain, applied to intensities in [0, 1]:

    x_dark = brightness * x ** gamma,   gamma = 2.2, brightness = 0.5 by default,

so mid-grey 0.5 falls to 0.11 and white to 0.5: shadows collapse faster than highlights,
like an under-exposed photograph. The decoder is trained on normal images only.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

DEFAULT_GAMMA = 2.2
DEFAULT_BRIGHTNESS = 0.5

Images = TypeVar("Images", torch.Tensor, np.ndarray)


def darken(images: Images, gamma: float = DEFAULT_GAMMA, brightness: float = DEFAULT_BRIGHTNESS) -> Images:
    """``brightness * x ** gamma`` on float images in [0, 1] or uint8 images in [0, 255].

    The result has the input's type and dtype (uint8 stays uint8, rounded).
    """
    if not gamma > 0:
        raise ValueError(f"gamma={gamma!r} out of range (0, inf)")
    if not 0 < brightness <= 1:
        raise ValueError(f"brightness={brightness!r} out of range (0, 1]")
    if isinstance(images, np.ndarray):
        if images.dtype == np.uint8:
            dark = brightness * (images.astype(np.float64) / 255.0) ** gamma
            return np.clip(np.rint(dark * 255.0), 0, 255).astype(np.uint8)
        return (brightness * np.clip(images, 0.0, 1.0) ** gamma).astype(images.dtype)
    if images.dtype == torch.uint8:
        dark = brightness * (images.double() / 255.0) ** gamma
        return torch.round(dark * 255.0).clamp(0, 255).to(torch.uint8)
    return brightness * images.clamp(0.0, 1.0) ** gamma
