"""Shared parts of the temperature-scaled contrastive losses."""

from __future__ import annotations

from torch import nn


class TemperatureLoss(nn.Module):
    """A loss of cosine similarities divided by a temperature tau > 0."""

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
