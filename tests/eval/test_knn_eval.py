"""Weighted kNN on frozen features and top-k accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crlsc_fl.eval.features import encode_images, images_to_tensor
from crlsc_fl.eval.knn import knn_accuracy, knn_predict, topk_accuracy
from crlsc_fl.models.encoders import build_encoder


def separable(n: int, classes: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each class a tight cluster around its own one-hot direction."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    features = torch.eye(dim)[labels] * 5 + 0.1 * torch.randn(n, dim, generator=g)
    return features, labels


@pytest.mark.parametrize("k", [1, 20, 200])
@pytest.mark.parametrize("classes", [2, 10])
def test_separable_features_reach_100(k: int, classes: int) -> None:
    train_x, train_y = separable(300, classes, 16, seed=0)
    test_x, test_y = separable(100, classes, 16, seed=1)
    result = knn_accuracy(train_x, train_y, test_x, test_y, num_classes=classes, k=k)
    assert result["top1"] == pytest.approx(100.0)
    assert result["top5"] == pytest.approx(100.0)


def test_random_labels_are_near_chance() -> None:
    train_x, _ = separable(500, 10, 16, seed=0)
    train_y = torch.randint(0, 10, (500,), generator=torch.Generator().manual_seed(3))
    test_x, test_y = separable(200, 10, 16, seed=1)
    assert knn_accuracy(train_x, train_y, test_x, test_y, 10, k=20)["top1"] < 40


def test_topk_accuracy_hand_example() -> None:
    scores = torch.tensor(
        [
            [0.1, 0.7, 0.2],  # ranking 1, 2, 0
            [0.5, 0.3, 0.2],  # ranking 0, 1, 2
            [0.2, 0.3, 0.5],  # ranking 2, 1, 0
            [0.6, 0.1, 0.3],  # ranking 0, 2, 1
        ]
    )
    labels = torch.tensor([1, 1, 0, 2])
    result = topk_accuracy(scores, labels, ks=(1, 2, 3, 5))
    assert result == {"top1": pytest.approx(25.0), "top2": pytest.approx(75.0), "top3": 100.0, "top5": 100.0}


def test_knn_predict_votes() -> None:
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    bank_labels = torch.tensor([0, 0, 1])
    query = torch.tensor([[1.0, 0.05], [0.1, 1.0]])
    scores = knn_predict(query, bank, bank_labels, num_classes=2, k=2, temperature=0.1, chunk=1)
    assert scores.shape == (2, 2)
    assert scores[0].argmax() == 0 and scores[1].argmax() == 1
    assert scores[0, 1] == 0  # the class-1 vector is not among query 0's two nearest
    # k larger than the bank is capped: every bank vector votes, weighted by exp(sim / tau)
    all_votes = knn_predict(query, bank, bank_labels, num_classes=2, k=10, temperature=0.1)
    sims = torch.nn.functional.normalize(query, dim=1) @ torch.nn.functional.normalize(bank, dim=1).T
    expected = torch.stack([(sims / 0.1).exp()[:, :2].sum(1), (sims / 0.1).exp()[:, 2]], dim=1)
    assert torch.allclose(all_votes, expected, rtol=1e-5)


def test_encode_images_kinds() -> None:
    torch.manual_seed(0)
    encoder = build_encoder("resnet18", dim=8, hidden_dim=8).train()
    images = np.random.default_rng(0).integers(0, 256, size=(5, 16, 16, 3), dtype=np.uint8)
    backbone = encode_images(encoder, images, batch_size=2)
    projection = encode_images(encoder, images, kind="projection")
    assert backbone.shape == (5, 512) and projection.shape == (5, 8)
    assert encoder.training  # restored
    assert torch.allclose(encode_images(encoder, images, batch_size=5), backbone, atol=1e-5)
    with pytest.raises(ValueError, match="unknown feature kind 'logits'; valid: backbone, projection"):
        encode_images(encoder, images, kind="logits")
    tensor = images_to_tensor(images)
    assert tensor.shape == (5, 3, 16, 16) and 0 <= tensor.min() and tensor.max() <= 1
    readonly = images.copy()
    readonly.flags.writeable = False
    assert torch.equal(images_to_tensor(readonly), tensor)


def test_accelerator_knn_votes_where_the_features_are() -> None:
    """Features from a device and labels on the CPU: the labels follow the features (``meta``
    stands for a GPU); CPU features give the same scores as before."""
    bank, query = torch.randn(7, 4), torch.randn(5, 4)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    scores = knn_predict(query.to("meta"), bank.to("meta"), labels, 3, k=3)
    assert scores.device.type == "meta" and scores.shape == (5, 3)
    assert knn_predict(query, bank, labels, 3, k=3).device.type == "cpu"


@pytest.mark.parametrize("kind", ["backbone", "projection"])
def test_accelerator_encode_images_runs_batches_on_the_encoders_device_and_returns_cpu_features(kind: str) -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(5, 16, 16, 3), dtype=np.uint8)
    torch.manual_seed(0)
    encoder = build_encoder("resnet18", dim=8, hidden_dim=8, width=0.25)
    features = encode_images(encoder, images, kind=kind, batch_size=2)
    assert features.device.type == "cpu" and len(features) == 5
    seen: list[tuple[str, torch.dtype, int]] = []
    encoder.to("meta").backbone.conv1.register_forward_pre_hook(lambda _, args: seen.append((args[0].device.type, args[0].dtype, len(args[0]))))
    with pytest.raises(NotImplementedError, match="Cannot copy out of meta tensor"):  # the features' way back to the CPU
        encode_images(encoder, images, kind=kind, batch_size=2)
    assert seen == [("meta", torch.float32, 2), ("meta", torch.float32, 2), ("meta", torch.float32, 1)]
