"""Partitioning into a public split and device shards (IID and Dirichlet label skew)."""

from __future__ import annotations

import numpy as np
import pytest

from crlsc_fl.data.partition import PARTITIONERS, Partition, label_skew, partition_dataset

NUM_CLASSES = 10


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    """2,000 labels, 200 per class, shuffled."""
    return np.random.default_rng(7).permutation(np.arange(2000) % NUM_CLASSES)


def _all_indices(partition: Partition) -> np.ndarray:
    return np.concatenate([partition.public, *partition.shards])


@pytest.mark.parametrize("scheme", PARTITIONERS)
@pytest.mark.parametrize("public_fraction", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("num_devices", [1, 3, 10])
def test_shards_are_disjoint_and_complete(labels, scheme: str, public_fraction: float, num_devices: int) -> None:
    part = partition_dataset(labels, num_devices, scheme, alpha=0.5, public_fraction=public_fraction, min_size=5, seed=3)
    assert len(part.shards) == num_devices
    everything = _all_indices(part)
    # disjoint (no index twice, across shards and the public split) and complete (union = all)
    assert len(everything) == len(np.unique(everything)) == len(labels)
    assert np.array_equal(np.sort(everything), np.arange(len(labels)))
    for shard in part.shards:
        assert shard.dtype == np.int64 and np.all(np.diff(shard) > 0)  # sorted, unique
        assert len(np.intersect1d(shard, part.public)) == 0
        assert len(shard) >= 5
    assert part.shard(num_devices - 1) is part.shards[-1]


@pytest.mark.parametrize("public_fraction", [0.1, 0.25])
def test_public_split_is_stratified(labels, public_fraction: float) -> None:
    part = partition_dataset(labels, 4, "dirichlet", alpha=0.3, public_fraction=public_fraction, seed=1)
    per_class = np.bincount(labels[part.public], minlength=NUM_CLASSES)
    assert np.all(per_class == round(public_fraction * 200))


@pytest.mark.parametrize("num_devices", [3, 7, 10])
def test_iid_shard_sizes_equal_within_one(labels, num_devices: int) -> None:
    part = partition_dataset(labels, num_devices, "iid", public_fraction=0.13, seed=0)
    sizes = [len(s) for s in part.shards]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("min_size", [20, 60])
def test_dirichlet_min_size_respected(labels, min_size: int) -> None:
    part = partition_dataset(labels, 10, "dirichlet", alpha=0.3, min_size=min_size, seed=0)
    assert min(len(s) for s in part.shards) >= min_size


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_skew_grows_as_alpha_shrinks(labels, seed: int) -> None:
    skew = {
        alpha: label_skew(labels, partition_dataset(labels, 10, "dirichlet", alpha=alpha, min_size=5, seed=seed), NUM_CLASSES)
        for alpha in (100.0, 1.0, 0.1)
    }
    assert skew[100.0] < skew[1.0] < skew[0.1]
    assert skew[100.0] < 0.1  # nearly IID
    assert skew[0.1] > 0.5  # most of a shard's mass sits on a few classes
    iid = label_skew(labels, partition_dataset(labels, 10, "iid", seed=seed), NUM_CLASSES)
    assert iid < skew[1.0]


def test_label_skew_extremes() -> None:
    labels = np.repeat(np.arange(4), 5)
    one_class_each = Partition(public=np.array([], dtype=np.int64), shards=tuple(np.flatnonzero(labels == c) for c in range(4)))
    assert label_skew(labels, one_class_each, 4) == pytest.approx(0.75)
    same_as_global = Partition(public=np.array([], dtype=np.int64), shards=(np.arange(20),))
    assert label_skew(labels, same_as_global, 4) == pytest.approx(0.0)


@pytest.mark.parametrize("scheme", PARTITIONERS)
def test_same_seed_same_shards_other_seed_other_shards(labels, scheme: str) -> None:
    kwargs = dict(num_devices=5, scheme=scheme, alpha=0.5, public_fraction=0.1)
    a, b = partition_dataset(labels, seed=11, **kwargs), partition_dataset(labels, seed=11, **kwargs)
    c = partition_dataset(labels, seed=12, **kwargs)
    assert np.array_equal(a.public, b.public)
    assert all(np.array_equal(x, y) for x, y in zip(a.shards, b.shards))
    assert not np.array_equal(a.public, c.public)
    assert not all(np.array_equal(x, y) for x, y in zip(a.shards, c.shards))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(scheme="pathological"), "scheme"),
        (dict(num_devices=0), "num_devices"),
        (dict(public_fraction=1.0), "public_fraction"),
        (dict(public_fraction=-0.1), "public_fraction"),
        (dict(scheme="dirichlet", alpha=0.0), "alpha"),
        (dict(num_devices=50, min_size=50), "min_size"),
        (dict(scheme="dirichlet", alpha=0.01, num_devices=20, min_size=90, max_tries=3), "min_size"),
    ],
)
def test_bad_inputs_name_the_field(labels, kwargs: dict, field: str) -> None:
    args = dict(num_devices=4, scheme="iid") | kwargs
    with pytest.raises(ValueError, match=field):
        partition_dataset(labels, **args)


def test_unknown_scheme_lists_valid_ones(labels) -> None:
    with pytest.raises(ValueError, match="valid: iid, dirichlet"):
        partition_dataset(labels, 2, "shards")
