"""Device plans and shards are a pure function of the scenario and its seed."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from crlsc_fl.data.config import DataConfig
from crlsc_fl.scenario.config import from_flat
from crlsc_fl.scenario.devices import DevicesConfig, federated_data, plan_devices, sample_devices


@pytest.mark.parametrize("seed", [0, 3])
def test_same_seed_same_architectures_and_shards(seed: int) -> None:
    devices, data_config = DevicesConfig(num_devices=20), DataConfig(dataset="synthetic")
    a, b = plan_devices(devices, seed), plan_devices(DevicesConfig(num_devices=20), seed)
    assert a == b
    data = federated_data(data_config, 20, seed)
    first = [data.partition.shard(i).copy() for i in range(20)]
    data_again = federated_data(DataConfig(dataset="synthetic", test_samples=11), 20, seed)  # another key, same seed
    assert all(np.array_equal(x, data_again.partition.shard(i)) for i, x in enumerate(first))


def test_architectures_follow_the_scenario_proportions() -> None:
    cfg = from_flat({"devices.num-devices": 100, "devices.architectures": "resnet18:0.6,resnet34:0.3,resnet50:0.1"})
    counts = Counter(d.arch for d in plan_devices(cfg.devices, cfg.scenario.seed))
    assert counts == {"resnet18": 60, "resnet34": 30, "resnet50": 10}


def test_different_seed_shuffles_architectures() -> None:
    a = [d.arch for d in plan_devices(DevicesConfig(), seed=0)]
    b = [d.arch for d in plan_devices(DevicesConfig(), seed=1)]
    assert a != b and sorted(a) == sorted(b)


def test_device_subset_covers_the_shards_classes_not_its_first_indices() -> None:
    # Offline CIFAR-10 is grouped by class: the first 64 sorted indices of a shard would hold
    # only the lowest classes. The subset must be a random sample of the whole shard.
    values = {"devices.num-devices": 4, "data.dataset": "synthetic", "data.samples-per-device": 40}
    cfg = from_flat(values)
    data = federated_data(cfg.data, cfg.devices.num_devices, cfg.scenario.seed)
    order = np.argsort(data.train.labels, kind="stable")
    grouped = data.train.subset(order)  # a class-grouped copy, like the offline CIFAR-10 files
    from crlsc_fl.scenario.devices import FederatedData

    grouped_data = FederatedData(grouped, data.test, data.partition, cfg.scenario.seed)
    _, labels = grouped_data.device_images(0, 40)
    full = grouped.labels[data.partition.shard(0)]
    assert len(labels) == 40
    assert len(np.unique(labels)) >= len(np.unique(full)) - 2
    images_again, labels_again = grouped_data.device_images(0, 40)
    assert np.array_equal(labels, labels_again)


@pytest.mark.parametrize(
    ("architectures", "width", "expected"),
    [
        ("resnet18:0.6,resnet34:0.3,resnet50:0.1", 0.5, {"resnet18": 0.5, "resnet34": 0.5, "resnet50": 0.5}),
        ("resnet18@0.25:0.6,resnet34@0.5:0.3,resnet50:0.1", 1.0, {"resnet18": 0.25, "resnet34": 0.5, "resnet50": 1.0}),
    ],
)
def test_each_device_gets_its_architectures_width(architectures: str, width: float, expected: dict[str, float]) -> None:
    values = {"devices.num-devices": 30, "devices.architectures": architectures, "devices.width": width}
    cfg = from_flat(values)
    plan = plan_devices(cfg.devices, cfg.scenario.seed)
    assert {d.arch: d.width for d in plan} == expected
    assert plan == plan_devices(from_flat(values).devices, cfg.scenario.seed)  # a pure function of the scenario
    # widths do not change who gets which architecture
    plain = plan_devices(DevicesConfig(num_devices=30, architectures="resnet18:0.6,resnet34:0.3,resnet50:0.1"), cfg.scenario.seed)
    assert [d.arch for d in plan] == [d.arch for d in plain]


@pytest.mark.parametrize(("count", "expected"), [(10, {"resnet18": 6, "resnet34": 3, "resnet50": 1}),
                                                 (3, {"resnet18": 1, "resnet34": 1, "resnet50": 1}),
                                                 (8, {"resnet18": 5, "resnet34": 2, "resnet50": 1}), (0, {})])
def test_device_sample_is_stratified_by_architecture_and_seeded(count: int, expected: dict[str, int]) -> None:
    cfg = from_flat({"devices.num-devices": 100, "devices.architectures": "resnet18:0.6,resnet34:0.3,resnet50:0.1"})
    plan = plan_devices(cfg.devices, cfg.scenario.seed)
    sample = sample_devices(plan, count, seed=0)
    assert sample == sorted(set(sample)) and len(sample) == count
    assert Counter(plan[d].arch for d in sample) == Counter(expected)
    assert sample_devices(plan, count, seed=0) == sample
    if count:
        assert sample_devices(plan, count, seed=1) != sample
