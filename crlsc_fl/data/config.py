"""Which data a federated run uses and how it is split (the scenario's ``[data]`` table)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from crlsc_fl.data.datasets import DATASETS
from crlsc_fl.data.partition import PartitionScheme
from crlsc_fl.validation import component, registered


@component
class DataConfig:
    """``dataset`` (registered loaders) from ``data_dir`` ("" = the default location, or a
    download where allowed); shards ``iid`` or ``dirichlet`` with concentration ``alpha``;
    ``public_fraction`` of the training set is the server's public split; every shard holds
    at least ``min_shard_size`` images; a device trains on ``samples_per_device`` of its
    shard (0 = all); every device is evaluated on the same seeded ``test_samples``."""

    dataset: registered(DATASETS.names) = "cifar10"  # type: ignore[valid-type]
    data_dir: str = ""
    partition: PartitionScheme = "iid"
    alpha: Annotated[float, Field(gt=0)] = 0.5
    public_fraction: Annotated[float, Field(ge=0, le=0.9)] = 0.1
    min_shard_size: Annotated[int, Field(ge=2)] = 20
    samples_per_device: Annotated[int, Field(ge=0)] = 0
    test_samples: Annotated[int, Field(ge=10)] = 1000
