"""NT-Xent / InfoNCE loss of SimCLR (Chen et al., 2020), the baseline DCL improves on.

Same negatives as :class:`DCLLoss` (K = 2B - 2 per anchor), but the positive pair stays
in the denominator: -log exp(<z,z+>/tau) / (exp(<z,z+>/tau) + sum_i exp(<z,z-^(i)>/tau)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from crlsc_fl.loss.base import TemperatureLoss


class NTXentLoss(TemperatureLoss):
    def forward(self, out0: torch.Tensor, out1: torch.Tensor) -> torch.Tensor:
        z = F.normalize(torch.cat([out0, out1]), dim=1)
        batch = out0.shape[0]
        logits = (z @ z.T / self.temperature).fill_diagonal_(float("-inf"))
        targets = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)]).to(z.device)
        return F.cross_entropy(logits, targets)
