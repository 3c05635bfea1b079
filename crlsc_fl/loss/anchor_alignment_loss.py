"""Anchor alignment: the grounding term of :mod:`crlsc_fl.methods.grounded` (beyond the paper).

A device embeds an (augmented) public anchor image; the loss is the cross-entropy of that
embedding's cosine similarities to every anchor key, divided by tau, against the anchor's
own key (InfoNCE against fixed targets, as in CLIP's image-to-text direction):

    L_align = -log  exp(<z_a, k_a>/tau) / sum_j exp(<z_a, k_j>/tau)

The keys are the mentor's (projected) vectors, so minimising it places the device's
embedding of an image where the mentor's vector of that image lies: the device's space is
grounded in the SKB's, and a query retrieves the mentor's neighbours of the image.
Duplicate keys (a text mentor's class prompts) are passed once, with each anchor's index.

With ``target_temperature`` set, the one-hot target becomes the mentor's own similarity
distribution over the keys, softmax(<k_a, k_j>/tau_t) (relational distillation as in SEED,
Fang et al. 2021): the device then learns which public images the mentor finds alike,
not only where each one lies. ``None`` keeps the one-hot target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from crlsc_fl.loss.base import TemperatureLoss


class AnchorAlignmentLoss(TemperatureLoss):
    def __init__(self, temperature: float = 0.1, target_temperature: float | None = None) -> None:
        super().__init__(temperature)
        if target_temperature is not None and target_temperature <= 0:
            raise ValueError(f"target_temperature must be > 0 (or None for one-hot targets), got {target_temperature}")
        self.target_temperature = target_temperature

    def forward(self, embeddings: torch.Tensor, keys: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``embeddings`` (B, d) of anchors, all unique ``keys`` (K, d), ``targets`` (B,) in [0, K)."""
        keys = F.normalize(keys, dim=1)
        logits = F.normalize(embeddings, dim=1) @ keys.T / self.temperature
        if self.target_temperature is None:
            return F.cross_entropy(logits, targets)
        soft = (keys[targets] @ keys.T / self.target_temperature).softmax(dim=1)
        return F.cross_entropy(logits, soft)
