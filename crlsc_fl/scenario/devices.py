"""Who each simulated device is: its shard, encoder architecture and width, compute profile.

Everything is a pure function of the ``[devices]`` table (and ``[data]``), the seed and the
device's partition id, so the ServerApp and every ClientApp derive the same plan without
exchanging it, and the same seed always gives the same devices. The functions take their
own configs, not the whole scenario (which composes this module's :class:`DevicesConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer

from crlsc_fl.accelerator import Accelerator
from crlsc_fl.data import ImageDataset, Partition, load_dataset, partition_dataset
from crlsc_fl.data.config import DataConfig
from crlsc_fl.data.paths import data_dir_named
from crlsc_fl.models.encoders import ENCODERS, STEMS
from crlsc_fl.validation import check_weights, component, mixture, number, parse_weights, registered

# Simulated device throughput (training images per second) per compute profile; it only
# turns counted work into simulated seconds, real compute is whatever this machine does.
COMPUTE_PROFILES = {"low": 50.0, "mid": 200.0, "high": 800.0}
ARCHITECTURE_FORMAT = "'arch:fraction' or 'arch@width:fraction', e.g. 'resnet18@0.25:0.6,resnet50:0.4'"


def parse_architectures(value: Any) -> Any:
    """``"resnet18@0.25:0.6,resnet50:0.4"`` -> {arch: (width or None, fraction)}."""
    if not isinstance(value, str):
        return value
    mix: dict[str, tuple[float | None, float]] = {}
    for name, fraction in parse_weights(value).items():
        arch, at, width = (part.strip() for part in name.partition("@"))
        if arch in mix:
            raise ValueError(f"names {arch!r} twice; give each architecture once ({ARCHITECTURE_FORMAT})")
        mix[arch] = (number(width, f"width of {arch!r}", ARCHITECTURE_FORMAT) if at else None,
                     number(fraction, f"fraction of {arch!r}", ARCHITECTURE_FORMAT))
    return mix


def check_architectures(mix: dict[str, tuple[float | None, float]]) -> dict[str, tuple[float | None, float]]:
    check_weights({arch: fraction for arch, (_, fraction) in mix.items()}, ENCODERS.names())
    for arch, (width, _) in mix.items():
        if width is not None and not 0 < width <= 4:
            raise ValueError(f"width {width!r} of {arch!r} out of range (0, 4] ({ARCHITECTURE_FORMAT})")
    return mix


def write_architectures(mix: dict[str, tuple[float | None, float]]) -> str:
    return ",".join(f"{arch}{'' if width is None else f'@{width!r}'}:{fraction!r}" for arch, (width, fraction) in mix.items())


ArchitectureMix = Annotated[
    dict[str, tuple[float | None, float]],
    BeforeValidator(parse_architectures), AfterValidator(check_architectures), PlainSerializer(write_architectures),
]


@component
class DevicesConfig:
    """The simulated devices (the scenario's ``[devices]`` table): how many, their encoder
    architectures and widths in proportions, ResNet stem, compute profiles, and where they
    compute (:mod:`crlsc_fl.accelerator`)."""

    num_devices: Annotated[int, Field(ge=1, le=10000, description="simulated devices (Flower SuperNodes / ClientApps)")] = 100
    architectures: Annotated[
        ArchitectureMix,
        Field(description="encoder architectures in proportions, `arch:fraction` entries summing to 1; `arch@width:fraction` "
                          "(e.g. `resnet18@0.25:0.6`) gives that architecture its own width in (0, 4], others get `devices.width`"),
    ] = Field(default_factory=lambda: parse_architectures("resnet18:0.6,resnet34:0.3,resnet50:0.1"))
    stem: Annotated[
        str, registered(lambda: STEMS),
        Field(description="ResNet stem: `imagenet` (7x7 conv + max-pool, torchvision's) or `cifar` (3x3 conv, no pool)"),
    ] = "imagenet"
    profiles: Annotated[
        dict[str, float], mixture(lambda: COMPUTE_PROFILES),
        Field(description="compute profiles in proportions (`low`, `mid`, `high`: 50, 200, 800 images/s), which turn counted "
                          "work into simulated seconds"),
    ] = Field(default_factory=lambda: {"low": 0.3, "mid": 0.5, "high": 0.2})
    width: Annotated[
        float, Field(gt=0, le=4, description="channel width multiplier of every ResNet without its own `@width` (1.0: torchvision's; "
                                             "0.25 trains ~12x faster on a CPU while ResNet-18/34/50 still differ in depth)")
    ] = 1.0
    accelerator: Annotated[
        Accelerator, Field(description="where every process computes: `cpu` (bit-reproducible), `cuda` (fails early where CUDA is "
                                       "missing) or `auto`")
    ] = "cpu"
    gpus_per_device: Annotated[
        float, Field(gt=0, le=1, description="share of one GPU a device's ClientApp asks Ray for when the accelerator is CUDA "
                                             "(0.25: 4 devices at a time per GPU, fewer if CPUs run out first)")
    ] = 0.25

    def architecture_mix(self) -> dict[str, tuple[float, float]]:
        """{arch: (width, fraction)}, widths defaulting to ``width``."""
        return {arch: (self.width if width is None else width, fraction) for arch, (width, fraction) in self.architectures.items()}


@dataclass(frozen=True)
class DeviceSpec:
    device: int
    arch: str
    profile: str
    width: float = 1.0  # channel width multiplier of its ResNet (per architecture, devices.architectures)

    @property
    def images_per_second(self) -> float:
        return COMPUTE_PROFILES[self.profile]


def _assign(mixture: dict[str, float], count: int, rng: np.random.Generator) -> list[str]:
    """Exact proportions (largest remainder), then a seeded shuffle."""
    names = list(mixture)
    raw = np.array([mixture[n] * count for n in names])
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts))[: count - counts.sum()]:
        counts[i] += 1
    labels = [name for name, c in zip(names, counts) for _ in range(c)]
    return [labels[i] for i in rng.permutation(count)]


def plan_devices(devices: DevicesConfig, seed: int) -> list[DeviceSpec]:
    """One spec per device, architectures (with their widths) and profiles in the
    ``devices`` table's proportions, seeded by the scenario's ``seed``."""
    n = devices.num_devices
    rng = np.random.default_rng(seed)
    mix = devices.architecture_mix()
    archs = _assign({arch: fraction for arch, (_, fraction) in mix.items()}, n, rng)
    profiles = _assign(devices.profiles, n, rng)
    return [DeviceSpec(i, a, p, mix[a][0]) for i, (a, p) in enumerate(zip(archs, profiles))]


def sample_devices(plan: list[DeviceSpec], count: int, seed: int) -> list[int]:
    """A seeded sample of ``count`` devices stratified by architecture (each architecture in
    its share of the plan, at least one of each while ``count`` allows), sorted. A pure
    function of the plan and seed: every topology of a run gets the same devices."""
    count = min(count, len(plan))
    if count == 0:
        return []
    rng = np.random.default_rng([seed, 2])
    by_arch: dict[str, list[int]] = {}
    for spec in plan:
        by_arch.setdefault(spec.arch, []).append(spec.device)
    shares = {arch: len(members) / len(plan) for arch, members in by_arch.items()}
    quota = dict(zip(shares, (max(1, c) for c in (round(count * s) for s in shares.values()))))
    while sum(quota.values()) > count:  # rounding (or the at-least-one rule) overshot: trim the largest
        quota[max(quota, key=lambda a: quota[a])] -= 1
    while sum(quota.values()) < count:
        quota[max(quota, key=lambda a: len(by_arch[a]) - quota[a])] += 1
    picked = [int(d) for arch, members in by_arch.items() for d in rng.choice(members, min(quota[arch], len(members)), replace=False)]
    return sorted(picked)


@dataclass(frozen=True)
class FederatedData:
    train: ImageDataset
    test: ImageDataset
    partition: Partition
    seed: int = 0

    def device_images(self, device: int, limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The device's private images and labels: its whole shard, or a seeded random
        ``limit`` of it. (Shards are sorted indices and datasets may be grouped by class, so
        the first ``limit`` would cover only the lowest classes.)"""
        shard = self.partition.shard(device)
        if limit and limit < len(shard):
            shard = np.sort(np.random.default_rng(self.seed * 7919 + device).choice(shard, limit, replace=False))
        return np.asarray(self.train.images[shard]), np.asarray(self.train.labels[shard])

    def public_split(self) -> ImageDataset:
        """The server's public split (disjoint from every shard and from the test set)."""
        return self.train.subset(self.partition.public)


_DATA: dict[tuple[DataConfig, int, int], FederatedData] = {}


def federated_data(data: DataConfig, num_devices: int, seed: int) -> FederatedData:
    """Datasets and partition over ``num_devices`` devices of the ``data`` table, seeded by the
    scenario's ``seed``; cached per process (Ray actors reuse it) by exactly these inputs."""
    key = (data, num_devices, seed)
    if key not in _DATA:
        d = data
        download = not data_dir_named(d.data_dir)  # a directory the user named must hold the data
        train = load_dataset(d.dataset, "train", d.data_dir or None, download=download)
        test = load_dataset(d.dataset, "test", d.data_dir or None, download=download)
        rng = np.random.default_rng(seed + 1)
        test = test.subset(np.sort(rng.choice(len(test), min(d.test_samples, len(test)), replace=False)))
        partition = partition_dataset(
            train.labels, num_devices, d.partition, d.alpha, d.public_fraction, d.min_shard_size, seed,
        )
        _DATA.clear()  # one scenario per process at a time; do not pile up datasets
        _DATA[key] = FederatedData(train, test, partition, seed)
    return _DATA[key]

