"""Datasets, partitioning and where data lives."""

from crlsc_fl.data.datasets import DATASETS, DatasetNotFoundError, ImageDataset, load_dataset
from crlsc_fl.data.partition import Partition, label_skew, partition_dataset
from crlsc_fl.data.paths import cache_dir, resolve_data_dir

__all__ = [
    "DATASETS", "DatasetNotFoundError", "ImageDataset", "Partition", "cache_dir", "label_skew",
    "load_dataset", "partition_dataset", "resolve_data_dir",
]
