"""Decoupled contrastive loss (paper eq. 3; Yeh et al., 2022).

    DCL(z, z+) = -<z, z+>/tau + log sum_{i=1..K} exp(<z, z-^(i)>/tau)

The positive pair is removed from the denominator, unlike InfoNCE. Vectors are
L2-normalised so <.,.> is the cosine similarity. Negatives of z0_i are every other sample
of both views (z0_j and z1_j for j != i, K = 2B - 2), as in lightly's ``DCLLoss``; the
loss is symmetrised over the two views.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from crlsc_fl.loss.base import TemperatureLoss


class DCLLoss(TemperatureLoss):
    def forward(self, out0: torch.Tensor, out1: torch.Tensor) -> torch.Tensor:
        out0, out1 = F.normalize(out0, dim=1), F.normalize(out1, dim=1)
        return 0.5 * (self._one_side(out0, out1) + self._one_side(out1, out0))

    def _one_side(self, z: torch.Tensor, z_other: torch.Tensor) -> torch.Tensor:
        batch = z.shape[0]
        positive = (z * z_other).sum(1) / self.temperature
        eye = torch.eye(batch, dtype=torch.bool, device=z.device)
        same_view = (z @ z.T / self.temperature).masked_fill(eye, float("-inf"))
        cross_view = (z @ z_other.T / self.temperature).masked_fill(eye, float("-inf"))
        negatives = torch.logsumexp(torch.cat([same_view, cross_view], dim=1), dim=1)
        return (negatives - positive).mean()
