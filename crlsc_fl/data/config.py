"""Which data a federated run uses and how it is split (the scenario's ``[data]`` table)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from crlsc_fl.data.datasets import DATASETS
from crlsc_fl.data.partition import PartitionScheme
from crlsc_fl.validation import component, registered


@component
class DataConfig:
    """Which dataset a run loads, how its training set is split into the server's public
    split and the devices' shards, and how much of it each device uses."""

    dataset: Annotated[
        str, registered(DATASETS.names),
        Field(description="the dataset (`cifar10`, `cifar100`, `stl10`; `synthetic` for tests)"),
    ] = "cifar10"
    data_dir: Annotated[
        str, Field(description="where the dataset is (\"\": `$CRLSC_DATA_DIR`, else the cache, downloading where allowed)")
    ] = ""
    partition: Annotated[
        PartitionScheme, Field(description="how the training set is split into shards: `iid` or `dirichlet` over the labels")
    ] = "iid"
    alpha: Annotated[float, Field(gt=0, description="concentration of the `dirichlet` partition (smaller: more skewed shards)")] = 0.5
    public_fraction: Annotated[
        float, Field(ge=0, le=0.9, description="fraction of the training set held back as the server's public split (stratified)")
    ] = 0.1
    min_shard_size: Annotated[int, Field(ge=2, description="fewest images in any device's shard")] = 20
    samples_per_device: Annotated[int, Field(ge=0, description="images of its shard a device trains on (0: the whole shard)")] = 0
    test_samples: Annotated[
        int, Field(ge=10, description="the seeded test subset every device is evaluated on (the kNN bank is the device's shard)")
    ] = 1000
