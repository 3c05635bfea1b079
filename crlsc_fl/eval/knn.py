"""Weighted kNN classification on frozen features (lightly's benchmark: k=200, tau=0.1).

Wu et al. (2018): the k nearest training features (cosine similarity) vote for their
label with weight exp(sim / tau); top-1 and top-5 are read off the vote totals.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field

from crlsc_fl.validation import component


@component
class KNNEvalConfig:
    """How every device's encoder is monitored (the scenario's ``[eval]`` table)."""

    knn_k: Annotated[
        int, Field(ge=1, description="neighbours that vote in the kNN monitor (lightly uses 200 for a 50k bank; "
                                     "a device's bank holds a few hundred images)")
    ] = 20
    knn_temperature: Annotated[float, Field(gt=0, description="temperature of the neighbours' votes, weight exp(sim / t)")] = 0.1


@torch.no_grad()
def knn_predict(
    query: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor, num_classes: int, k: int = 200, temperature: float = 0.1,
    chunk: int = 1024,
) -> torch.Tensor:
    """Class scores (Q, num_classes) for each query by similarity-weighted kNN voting, on
    the features' device (the labels follow them there)."""
    query, bank = F.normalize(query, dim=1), F.normalize(bank, dim=1)
    bank_labels = bank_labels.to(bank.device)
    k = min(k, len(bank))
    out = []
    for start in range(0, len(query), chunk):
        sim, idx = (query[start : start + chunk] @ bank.T).topk(k, dim=1)
        weights = (sim / temperature).exp()
        one_hot = F.one_hot(bank_labels[idx], num_classes).float()
        out.append((one_hot * weights.unsqueeze(-1)).sum(1))
    return torch.cat(out)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """{"top1": .., "top5": ..} in percent; k is capped at the number of classes."""
    ranked = scores.argsort(dim=1, descending=True)
    labels = labels.to(scores.device)
    return {
        f"top{k}": float((ranked[:, : min(k, scores.shape[1])] == labels.view(-1, 1)).any(1).float().mean() * 100)
        for k in ks
    }


def knn_accuracy(
    train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor, test_labels: torch.Tensor,
    num_classes: int, k: int = 200, temperature: float = 0.1,
) -> dict[str, float]:
    scores = knn_predict(test_features, train_features, train_labels, num_classes, k, temperature)
    return topk_accuracy(scores, test_labels)
