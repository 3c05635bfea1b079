"""Anchor alignment loss: the formula, its minimum, and its gradient direction."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from crlsc_fl.loss import AnchorAlignmentLoss


def test_matches_the_formula() -> None:
    g = torch.Generator().manual_seed(0)
    z, keys = torch.randn(6, 8, generator=g), torch.randn(10, 8, generator=g)
    targets = torch.tensor([0, 3, 3, 9, 1, 2])
    tau = 0.2
    zn, kn = F.normalize(z, dim=1), F.normalize(keys, dim=1)
    logits = zn @ kn.T / tau
    expected = -(logits[torch.arange(6), targets] - logits.logsumexp(dim=1)).mean()
    assert AnchorAlignmentLoss(tau)(z, keys, targets).item() == pytest.approx(expected.item(), rel=1e-5)


def test_lowest_when_embeddings_sit_on_their_keys() -> None:
    keys = torch.eye(5)
    targets = torch.arange(5)
    loss = AnchorAlignmentLoss(0.1)
    on_keys = loss(keys * 3.0, keys, targets)  # scale does not matter: cosine similarity
    shuffled = loss(keys[[1, 2, 3, 4, 0]], keys, targets)
    assert on_keys < 0.01 < shuffled


def test_gradient_step_moves_towards_the_key() -> None:
    keys = F.normalize(torch.randn(4, 6, generator=torch.Generator().manual_seed(1)), dim=1)
    z = torch.randn(1, 6, generator=torch.Generator().manual_seed(2), requires_grad=True)
    before = F.cosine_similarity(z, keys[2:3]).item()
    AnchorAlignmentLoss(0.1)(z, keys, torch.tensor([2])).backward()
    with torch.no_grad():
        after = F.cosine_similarity(z - 0.1 * z.grad, keys[2:3]).item()
    assert after > before
