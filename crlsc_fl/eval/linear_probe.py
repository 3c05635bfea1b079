"""Linear evaluation on frozen features (paper sec. 4.2): a softmax classifier trained with Adam."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from crlsc_fl.eval.knn import topk_accuracy


def fit_classifier(
    head: nn.Module, features: torch.Tensor, labels: torch.Tensor, epochs: int = 100, lr: float = 1e-3,
    batch_size: int = 1024, weight_decay: float = 1e-5, seed: int = 0,
) -> nn.Module:
    """Train ``head`` on (N, F) features with cross-entropy, mini-batch Adam, cosine lr; the
    head, features and labels share a device (the batch order is drawn on the CPU)."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * max(1, -(-len(features) // batch_size))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    head.train()
    for _ in range(epochs):
        order = torch.randperm(len(features), generator=generator).to(features.device)
        for start in range(0, len(features), batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2:
                continue  # batch-norm heads (the MLP probe) cannot train on one sample
            loss = F.cross_entropy(head(features[idx]), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    head.eval()
    return head


def standardize(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale both splits with the training split's per-feature mean and std."""
    mean, std = train.mean(0, keepdim=True), train.std(0, keepdim=True).clamp_min(1e-6)
    return (train - mean) / std, (test - mean) / std


def linear_probe_accuracy(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, num_classes: int,
    epochs: int = 100, seed: int = 0,
) -> dict[str, float]:
    """Top-1/top-5 (%) of a linear classifier trained on standardised frozen features."""
    train_x, test_x = standardize(train_x, test_x)
    torch.manual_seed(seed)
    head = fit_classifier(nn.Linear(train_x.shape[1], num_classes).to(train_x.device), train_x, train_y, epochs=epochs, seed=seed)
    with torch.no_grad():
        return topk_accuracy(head(test_x), test_y)
