"""``simclr``: two views with the NT-Xent loss (Chen et al., 2020), the InfoNCE baseline."""

from __future__ import annotations

from typing import Any

import torch

from crlsc_fl.loss.ntxent_loss import NTXentLoss
from crlsc_fl.methods.base import Stage1Method
from crlsc_fl.methods.registry import METHODS


@METHODS.register("simclr")
class SimCLRMethod(Stage1Method):
    name = "simclr"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loss_fn = NTXentLoss(self.config.temperature)

    def training_loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(*self.embed((view1,), (view2,)))
