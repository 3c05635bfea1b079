"""The float-noise yardstick of the GPU check: an unperturbed rerun moves nothing, and the
perturbation reaches the device encoders (and only inside its block)."""

from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.float_noise import device_list, measure, perturbed_initial_weights
from crlsc_fl.device import device_round
from crlsc_fl.models.encoders import build_encoder
from crlsc_fl.scenario.config import from_flat

VALUES = {
    "devices.num-devices": 2, "data.dataset": "synthetic", "data.samples-per-device": 16, "data.test-samples": 20,
    "devices.architectures": "resnet18@0.125:1.0", "train.batch-size": 8, "data.min-shard-size": 16, "scenario.rounds": 2,
    "train.steps-per-round": 2, "train.kb-method": "crlsc-grounded", "kb.source": "random", "kb.dim": 16, "kb.anchors": 8,
    "kb.index-type": "flat", "grounding.anchor-batch": 4,
}


def test_an_unperturbed_rerun_gives_the_same_knn(private_cache: Path) -> None:
    report = measure(from_flat(VALUES), [1], perturbation=0.0)
    assert [row["device"] for row in report["devices"]] == [1]
    for topology in ("local", "cloud-edge"):
        assert report["topologies"][topology] == {"n": 1, "mean_difference": 0.0, "std_difference": 0.0, "max_abs_difference": 0.0}


def test_the_perturbation_scales_the_initial_weights_inside_its_block_only() -> None:
    torch.manual_seed(0)
    exact = build_encoder("resnet18", dim=8, width=0.125)
    with perturbed_initial_weights(1e-2):
        torch.manual_seed(0)
        moved = device_round.build_encoder("resnet18", dim=8, width=0.125)
    for a, b in zip(exact.parameters(), moved.parameters()):
        assert torch.allclose(b, a * 1.01)
    assert device_round.build_encoder is build_encoder
    assert device_list("0-2,7") == [0, 1, 2, 7]
