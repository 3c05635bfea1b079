"""``dcl``: plain two-view contrastive learning with the DCL loss (eq. 3), no knowledge base."""

from __future__ import annotations

import torch

from crlsc_fl.methods.base import Stage1Method
from crlsc_fl.methods.registry import METHODS


@METHODS.register("dcl")
class DCLMethod(Stage1Method):
    name = "dcl"

    def training_loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(*self.embed((view1,), (view2,)))
