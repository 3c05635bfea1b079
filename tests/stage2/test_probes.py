"""Probes (sec. 4.2) on frozen features, and the per-encoder feature cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crlsc_fl.eval.knn import topk_accuracy
from crlsc_fl.models.encoders import build_encoder
from crlsc_fl.registry import UnknownNameError
from crlsc_fl.stage2 import features as features_module
from crlsc_fl.stage2.features import cached_features, extract_features
from crlsc_fl.stage2.probes import PROBES, ProbeConfig, train_probe
from crlsc_fl.validation import ConfigError, build_component


def _blobs(n: int, classes: int, dims: int, seed: int, spread: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Separable features: one Gaussian blob per class around fixed centres."""
    centres = np.random.default_rng(99).normal(0, 3, size=(classes, dims))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    return (centres[labels] + rng.normal(0, spread, size=(n, dims))).astype(np.float32), labels


def test_registry_names() -> None:
    assert PROBES.names() == ["linear", "mlp"]


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("classes", [3, 10])
def test_probes_separate_generated_features(kind: str, classes: int) -> None:
    train_x, train_y = _blobs(600, classes, 16, seed=0)
    test_x, test_y = _blobs(300, classes, 16, seed=1)
    result = train_probe(kind, train_x, train_y, test_x, test_y, classes, ProbeConfig(epochs=15, batch_size=64, lr=1e-2, hidden=64))
    assert result.top1 > 0.95
    assert result.top5 >= result.top1
    if classes < 5:
        assert result.top5 == 1.0  # top-5 of 3 classes: always a hit
    assert (result.num_train, result.num_test) == (600, 300)


def test_topk_accuracy() -> None:
    logits = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1]])
    labels = torch.tensor([0, 0, 1])
    scores = topk_accuracy(logits, labels, ks=(1, 2, 5))
    assert scores["top1"] == pytest.approx(100 / 3, rel=1e-5)
    assert scores["top2"] == pytest.approx(200 / 3, rel=1e-5)
    assert scores["top5"] == 100.0


def test_bad_probe_inputs() -> None:
    x, y = _blobs(20, 3, 4, seed=0)
    with pytest.raises(UnknownNameError, match="unknown probe 'svm'; valid: linear, mlp"):
        train_probe("svm", x, y, x, y, 3)
    with pytest.raises(ValueError, match=r"train labels must lie in \[0, 2\)"):
        train_probe("linear", x, y, x, y, 2)
    with pytest.raises(ValueError, match="train features have 4 dims, test features 3"):
        train_probe("linear", x, y, x[:, :3], y, 3)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epochs": 0}, "probe.epochs=0: out of range [1, inf)"),
        ({"batch-size": True}, "probe.batch-size=True: Input should be a valid integer"),
        ({"lr": 0.0}, "probe.lr=0.0: out of range (0, inf)"),
        ({"weight-decay": -1e-5}, "probe.weight-decay=-1e-05: out of range [0, inf)"),
        ({"hidden": 2.0}, "probe.hidden=2.0: Input should be a valid integer"),
    ],
)
def test_bad_probe_config(values: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_component(ProbeConfig, values, "probe")
    assert str(err.value) == message


def test_features_are_cached_per_encoder_and_layer(encoder, images, monkeypatch) -> None:
    calls: list[str] = []
    real = features_module.extract_features

    def counting(enc, imgs, layer="layer4", batch_size=256):
        calls.append(layer)
        return real(enc, imgs, layer, batch_size)

    monkeypatch.setattr(features_module, "extract_features", counting)
    first = cached_features(encoder, images[:16], "synthetic", "train", "layer4")
    again = cached_features(encoder, images[:16], "synthetic", "train", "layer4")
    assert first.shape == (16, 512) and np.array_equal(first, again)
    assert calls == ["layer4"]  # the second call read the cache
    assert np.allclose(first, extract_features(encoder, images[:16], "layer4"), atol=1e-5)
    cached_features(encoder, images[:16], "synthetic", "train", "layer3")  # another layer: new entry
    cached_features(encoder, images[:8], "synthetic", "train", "layer4")  # another subset: new entry
    other = build_encoder("resnet18", dim=32, stem="imagenet", hidden_dim=32)  # other weights: new entry
    assert not np.allclose(cached_features(other, images[:16], "synthetic", "train", "layer4"), first)
    assert calls == ["layer4", "layer3", "layer4", "layer4"]


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_probe_on_encoder_features(encoder, labelled_images, kind: str) -> None:
    """End to end on a random encoder: class colours survive its features, so probes learn them."""
    images, labels = labelled_images
    x = extract_features(encoder, images, "layer4")
    result = train_probe(kind, x[:64], labels[:64], x[64:], labels[64:], 10, ProbeConfig(epochs=30, batch_size=16, lr=1e-2))
    assert result.top1 > 0.5


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_accelerator_probe_trains_on_the_given_device(kind: str) -> None:
    train_x, train_y = _blobs(100, 3, 8, seed=0)
    test_x, test_y = _blobs(50, 3, 8, seed=1)
    config = ProbeConfig(epochs=2, batch_size=32, hidden=16)
    assert train_probe(kind, train_x, train_y, test_x, test_y, 3, config) == train_probe(
        kind, train_x, train_y, test_x, test_y, 3, config, device="cpu")
    # on meta (a GPU's stand-in) the probe trains; only reading the accuracy back needs data
    with pytest.raises(RuntimeError, match=r"cannot be called on meta tensors"):
        train_probe(kind, train_x, train_y, test_x, test_y, 3, config, device="meta")


def test_accelerator_features_come_back_to_the_cpu() -> None:
    torch.manual_seed(0)
    encoder = build_encoder("resnet18", dim=8, hidden_dim=8, width=0.25).eval()
    images = np.random.default_rng(0).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    assert isinstance(extract_features(encoder, images), np.ndarray)
    with pytest.raises(NotImplementedError, match="Cannot copy out of meta tensor"):  # computed on meta, then moved
        extract_features(encoder.to("meta"), images)
