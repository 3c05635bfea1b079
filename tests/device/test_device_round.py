"""One device round without Flower: evaluation on the shared test subset with the whole
shard as the kNN bank, the architecture's own width in the encoder, the metrics, and
anchor-keyed PKBs from device to device."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from crlsc_fl.device import device_round
from crlsc_fl.device.device_round import RoundTask, evaluate_encoder, run_device_round
from crlsc_fl.device.device_store import DeviceStore
from crlsc_fl.device.placement import placement
from crlsc_fl.eval.features import encode_images
from crlsc_fl.kb.anchors import AnchorSet
from crlsc_fl.models.encoders import build_encoder, load_encoder
from crlsc_fl.scenario.config import from_flat
from crlsc_fl.scenario.devices import federated_data, plan_devices

VALUES = {
    "devices.num-devices": 4, "data.dataset": "synthetic", "data.samples-per-device": 16, "data.test-samples": 60,
    "devices.architectures": "resnet18@0.25:0.5,resnet34@0.125:0.5", "train.batch-size": 8, "data.min-shard-size": 16,
}


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What each kNN evaluation was given (bank and test features and labels)."""
    calls: list[dict[str, Any]] = []
    real = device_round.knn_accuracy

    def spy(bank: torch.Tensor, bank_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor, *args: Any, **kw: Any):
        calls.append({"bank": len(bank), "bank_labels": bank_labels.clone(), "test": len(test), "test_labels": test_labels.clone(),
                      "grad": bank.requires_grad or test.requires_grad})
        return real(bank, bank_labels, test, test_labels, *args, **kw)

    monkeypatch.setattr(device_round, "knn_accuracy", spy)
    return calls


@pytest.mark.parametrize("device", [0, 3])
def test_every_device_is_evaluated_on_the_same_test_subset_with_its_whole_shard(device: int, captured: list) -> None:
    cfg = from_flat(VALUES)
    data = federated_data(cfg.data, cfg.devices.num_devices, cfg.scenario.seed)
    shard = data.partition.shard(device)
    assert len(shard) > cfg.data.samples_per_device  # the bank is more than the training subset
    encoder = build_encoder("resnet18", dim=16, width=0.125)
    for d in (device, (device + 1) % 4):
        evaluate_encoder(cfg, encoder, d)
    first, other = captured
    assert first["bank"] == len(shard) and torch.equal(first["bank_labels"], torch.from_numpy(data.train.labels[shard]))
    assert first["test"] == other["test"] == cfg.data.test_samples
    assert torch.equal(first["test_labels"], other["test_labels"])
    assert not first["grad"]


def test_a_round_trains_its_architectures_width_and_reports_sizes(tmp_path: Path, captured: list) -> None:
    cfg = from_flat(VALUES)
    first_of_each_arch = {s.arch: s for s in reversed(plan_devices(cfg.devices, cfg.scenario.seed))}
    outcomes = {}
    for spec in first_of_each_arch.values():
        store = DeviceStore(tmp_path, "run", "local", spec.device)
        outcome = run_device_round(cfg, spec.device, RoundTask("local", 1, "dcl", 16), store)
        assert outcome.placement == placement()  # where it ran: here, outside Ray, this host
        outcomes[spec.arch] = outcome.metrics
    for arch, metrics in outcomes.items():
        width = {"resnet18": 0.25, "resnet34": 0.125}[arch]
        expected = sum(p.numel() for p in build_encoder(arch, dim=16, stem=cfg.devices.stem, width=width).parameters())
        assert metrics["parameters"] == expected
        assert metrics["flops_per_image"] > 0 and 0 <= metrics["knn_top1"] <= 100
    assert len(outcomes) == 2 and all(c["test"] == cfg.data.test_samples for c in captured)


@pytest.mark.parametrize("knowledge", ["anchor-pkb", "random-anchor-pkb"])
def test_anchor_keyed_pkbs_go_from_device_to_device(tmp_path: Path, knowledge: str) -> None:
    """Round 1: device 0 (grounded by the mentor's anchors) returns its anchor-keyed PKB, its
    own view of the anchors or, as the control, seeded random keys. Round 2: device 1 trains
    with those keys as its only alignment targets and keeps them."""
    cfg = from_flat({**VALUES, "train.kb-method": "crlsc-grounded", "kb.anchors": 8, "topology.peer-knowledge": knowledge})
    images = np.asarray(federated_data(cfg.data, cfg.devices.num_devices, cfg.scenario.seed).train.images[:8])
    keys = np.random.default_rng(0).normal(size=(8, 16)).astype(np.float32)
    anchors = AnchorSet(images, keys / np.linalg.norm(keys, axis=1, keepdims=True), source="mentor")
    first = run_device_round(cfg, 0, RoundTask("p2p", 1, "crlsc-grounded", 16, return_pkb=True, anchor_key="anchors"),
                             DeviceStore(tmp_path, "run", "p2p", 0), {"anchors": anchors.to_bytes()})
    assert first.pkb is not None
    view = anchors.keys_from_bytes(first.pkb)
    np.testing.assert_allclose(np.linalg.norm(view.keys, axis=1), 1.0, atol=2e-3)
    if knowledge == "anchor-pkb":  # the device's projections of the anchors (its stored weights are float16)
        encoder = load_encoder(DeviceStore(tmp_path, "run", "p2p", 0).encoder_file)
        own = torch.nn.functional.normalize(encode_images(encoder, images, kind="projection"), dim=1).numpy()
        assert (view.keys * own).sum(axis=1).min() > 0.99  # cosine per anchor
    else:
        rng_keys = np.random.default_rng([cfg.scenario.seed, 0, 1]).standard_normal((8, 16))
        np.testing.assert_allclose(view.keys, rng_keys / np.linalg.norm(rng_keys, axis=1, keepdims=True), atol=2e-3)
    store = DeviceStore(tmp_path, "run", "p2p", 1)
    task = RoundTask("p2p", 2, "crlsc-grounded", 16, state_round=0, anchor_key="anchors", peer_anchor_keys=("pkb-p2p-d0-r1",))
    second = run_device_round(cfg, 1, task, store, {"anchors": anchors.to_bytes(), "pkb-p2p-d0-r1": first.pkb})
    assert second.metrics["steps"] > 0 and (store.path / "kb" / "pkb-p2p-d0-r1.kb").exists()


def test_accelerator_a_round_computes_on_the_resolved_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The round resolves ``devices.accelerator`` and trains there (``meta`` stands for a GPU:
    the whole step runs, only the loss cannot be read back)."""
    asked: list[str] = []

    def resolve(accelerator: str) -> torch.device:
        asked.append(accelerator)
        return torch.device("meta")

    monkeypatch.setattr(device_round, "resolve_device", resolve)
    cfg = from_flat({**VALUES, "devices.accelerator": "auto"})
    with pytest.raises(RuntimeError, match=r"item\(\) cannot be called on meta tensors"):
        run_device_round(cfg, 0, RoundTask("local", 1, "dcl", 16), DeviceStore(tmp_path, "run", "local", 0))
    assert asked == ["auto"]


def test_accelerator_a_cuda_round_without_cuda_fails_naming_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = from_flat({**VALUES, "devices.accelerator": "cuda"})
    with pytest.raises(ValueError, match=r"devices\.accelerator='cuda' but CUDA is not available"):
        run_device_round(cfg, 0, RoundTask("local", 1, "dcl", 16), DeviceStore(tmp_path, "run", "local", 0))
