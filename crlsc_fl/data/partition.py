"""Split a labelled dataset into a server public split and disjoint device shards.

IID: a seeded shuffle cut into equal shards. Dirichlet(alpha) label skew (Hsu et al.,
2019): for every class, its samples are divided among devices in proportions drawn from
Dir(alpha); smaller alpha gives more skew. Shards are redrawn until every device has at
least ``min_size`` samples. The public split is taken first (stratified) and never
overlaps a device shard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

PartitionScheme = Literal["iid", "dirichlet"]
PARTITIONERS: tuple[str, ...] = get_args(PartitionScheme)



@dataclass(frozen=True)
class Partition:
    """Index arrays into the source dataset: one public split and one shard per device."""

    public: np.ndarray
    shards: tuple[np.ndarray, ...]

    def shard(self, device: int) -> np.ndarray:
        return self.shards[device]


def partition_dataset(
    labels: np.ndarray,
    num_devices: int,
    scheme: str = "iid",
    alpha: float = 0.5,
    public_fraction: float = 0.0,
    min_size: int = 10,
    seed: int = 0,
    max_tries: int = 100,
) -> Partition:
    """Partition sample indices; same arguments give the same shards."""
    if scheme not in PARTITIONERS:
        raise ValueError(f"unknown partition scheme {scheme!r}; valid: {', '.join(PARTITIONERS)}")
    if num_devices < 1:
        raise ValueError(f"num_devices must be >= 1, got {num_devices}")
    if not 0.0 <= public_fraction < 1.0:
        raise ValueError(f"public_fraction must be in [0, 1), got {public_fraction}")
    if scheme == "dirichlet" and alpha <= 0:
        raise ValueError(f"alpha must be > 0 for the dirichlet scheme, got {alpha}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    public, private = _stratified_split(labels, public_fraction, rng)
    if len(private) < num_devices * min_size:
        raise ValueError(
            f"{len(private)} private samples cannot give {num_devices} devices at least min_size={min_size} each"
        )
    if scheme == "iid":
        shards = np.array_split(rng.permutation(private), num_devices)
    else:
        shards = _dirichlet_shards(labels, private, num_devices, alpha, min_size, rng, max_tries)
    return Partition(public=np.sort(public), shards=tuple(np.sort(s) for s in shards))


def _stratified_split(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    public, private = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        cut = int(round(fraction * len(idx)))
        public.append(idx[:cut])
        private.append(idx[cut:])
    return np.concatenate(public).astype(np.int64), np.concatenate(private).astype(np.int64)


def _dirichlet_shards(
    labels: np.ndarray,
    private: np.ndarray,
    num_devices: int,
    alpha: float,
    min_size: int,
    rng: np.random.Generator,
    max_tries: int,
) -> list[np.ndarray]:
    for _ in range(max_tries):
        shards: list[list[np.ndarray]] = [[] for _ in range(num_devices)]
        for cls in np.unique(labels[private]):
            idx = rng.permutation(private[labels[private] == cls])
            proportions = rng.dirichlet(np.full(num_devices, alpha))
            cuts = (np.cumsum(proportions)[:-1] * len(idx)).astype(int)
            for device, part in enumerate(np.split(idx, cuts)):
                shards[device].append(part)
        merged = [np.concatenate(parts) for parts in shards]
        if min(len(s) for s in merged) >= min_size:
            return merged
    raise ValueError(
        f"could not draw Dirichlet(alpha={alpha}) shards with min_size={min_size} for {num_devices} devices "
        f"in {max_tries} tries; raise alpha or lower min_size"
    )


def label_skew(labels: np.ndarray, partition: Partition, num_classes: int) -> float:
    """Mean total-variation distance between each shard's label histogram and the global one."""
    global_hist = np.bincount(labels, minlength=num_classes) / len(labels)
    distances = []
    for shard in partition.shards:
        hist = np.bincount(labels[shard], minlength=num_classes) / max(len(shard), 1)
        distances.append(0.5 * np.abs(hist - global_hist).sum())
    return float(np.mean(distances))
