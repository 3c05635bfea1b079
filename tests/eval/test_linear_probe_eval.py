"""Linear evaluation on frozen features."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from crlsc_fl.eval.linear_probe import fit_classifier, linear_probe_accuracy, standardize


def blobs(n: int, classes: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)) * 3
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    return centres[labels] + 0.3 * torch.randn(n, dim, generator=g), labels


@pytest.mark.parametrize("classes", [2, 10])
def test_separable_features_reach_100(classes: int) -> None:
    train_x, train_y = blobs(400, classes, 16, seed=0)
    test_x, test_y = blobs(200, classes, 16, seed=1)
    # one batch per epoch at this size: 300 Adam steps (the default 100 leaves 10 classes at ~60 %)
    result = linear_probe_accuracy(train_x, train_y, test_x, test_y, classes, epochs=300)
    assert result["top1"] == pytest.approx(100.0)
    assert result["top5"] == pytest.approx(100.0)


def test_standardize_uses_train_statistics() -> None:
    train = torch.tensor([[0.0, 10.0], [2.0, 30.0]])
    test = torch.tensor([[1.0, 20.0]])
    train_s, test_s = standardize(train, test)
    assert torch.allclose(train_s.mean(0), torch.zeros(2), atol=1e-6)
    assert torch.allclose(test_s, torch.zeros(1, 2), atol=1e-6)
    constant_s, _ = standardize(torch.ones(3, 2), torch.ones(1, 2))  # zero std is clamped, no NaN
    assert torch.isfinite(constant_s).all()


def test_fit_classifier_is_seeded_and_skips_single_sample_batches() -> None:
    x, y = blobs(65, 3, 8, seed=0)  # batch 32: the last batch has one sample

    def train(seed: int) -> torch.Tensor:
        torch.manual_seed(0)
        head = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
        fit_classifier(head, x, y, epochs=3, batch_size=32, seed=seed)
        assert not head.training
        return head[0].weight.detach().clone()

    assert torch.equal(train(1), train(1))
    assert not torch.equal(train(1), train(2))
