"""Dataset loading: generated data, registry errors, missing data, the decoded-array cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crlsc_fl.data import datasets as datasets_module
from crlsc_fl.data.datasets import (
    CIFAR10_CLASSES,
    DATASETS,
    DatasetNotFoundError,
    ImageDataset,
    load_dataset,
    write_offline_cifar10,
)
from crlsc_fl.data.paths import cache_dir, resolve_data_dir
from crlsc_fl.registry import UnknownNameError

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _smooth_images(n: int, seed: int) -> np.ndarray:
    """Smooth colour gradients (JPEG keeps them within a few grey levels)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, 32), np.linspace(0, 1, 32), indexing="ij")
    base = rng.uniform(0.2, 0.8, size=(n, 1, 1, 3))
    slopes = rng.uniform(-0.2, 0.2, size=(2, n, 1, 1, 3))
    pixels = base + slopes[0] * yy[None, :, :, None] + slopes[1] * xx[None, :, :, None]
    return np.clip(pixels * 255, 0, 255).astype(np.uint8)


def test_registry_names() -> None:
    assert DATASETS.names() == ["cifar10", "cifar100", "stl10", "synthetic"]


@pytest.mark.parametrize("split", ["train", "test"])
def test_synthetic_loads_without_a_directory(split: str) -> None:
    data = load_dataset("synthetic", split, data_dir="/nonexistent/anywhere", synthetic_size=40)
    assert isinstance(data, ImageDataset)
    assert data.images.shape == (40, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.labels.dtype == np.int64 and len(data) == 40
    assert len(data.class_names) == 10 and np.bincount(data.labels).tolist() == [4] * 10


def test_synthetic_splits_differ_and_repeat() -> None:
    train, test = load_dataset("synthetic", "train", synthetic_size=20), load_dataset("synthetic", "test", synthetic_size=20)
    assert not np.array_equal(train.images, test.images)
    assert np.array_equal(train.images, load_dataset("synthetic", "train", synthetic_size=20).images)


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown dataset 'imagenet'; valid: cifar10, cifar100, stl10, synthetic"):
        load_dataset("imagenet")


def test_unknown_split_lists_valid_splits() -> None:
    with pytest.raises(ValueError, match="valid: train, test"):
        load_dataset("synthetic", "validation")


def test_missing_cifar10_names_path_and_expected_files(tmp_path: Path, private_cache: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", "train", data_dir=tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path) in message
    assert str(tmp_path / "cifar10" / "train.npz") in message
    assert "cifar-10-batches-py" in message and "CRLSC_DATA_DIR" in message
    assert isinstance(info.value, FileNotFoundError)


def test_image_dataset_validates_shapes() -> None:
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset("x", np.zeros((2, 4, 4, 3), dtype=np.float32), np.zeros(2, dtype=np.int64), ("a",))
    with pytest.raises(ValueError, match="2 images but 3 labels"):
        ImageDataset("x", np.zeros((2, 4, 4, 3), dtype=np.uint8), np.zeros(3, dtype=np.int64), ("a",))
    data = ImageDataset("x", np.arange(4 * 48, dtype=np.uint8).reshape(4, 4, 4, 3), np.arange(4), ("a",))
    sub = data.subset(np.array([3, 1]))
    assert sub.labels.tolist() == [3, 1] and np.array_equal(sub.images[0], data.images[3])


def test_offline_cifar10_decodes_and_caches(tmp_path: Path, private_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = _smooth_images(12, seed=0), np.repeat(np.arange(3), 4)
    names = ["red", "green", "blue"]
    write_offline_cifar10(tmp_path / "data", "test", images, labels, names)

    first = load_dataset("cifar10", "test", data_dir=tmp_path / "data", download=False)
    assert first.images.shape == (12, 32, 32, 3) and first.images.dtype == np.uint8
    assert first.labels.tolist() == labels.tolist() and first.class_names == tuple(names)
    assert np.abs(first.images.astype(int) - images.astype(int)).max() <= 12  # JPEG, lossy but close
    cached = list((private_cache / "decoded").glob("*-images.npy"))
    assert len(cached) == 1 and len(list((private_cache / "decoded").glob("*-labels.npy"))) == 1

    def no_decode(path: Path):
        raise AssertionError(f"decoded {path} again instead of reading the cache")

    monkeypatch.setattr(datasets_module, "_decode_jpeg_npz", no_decode)
    second = load_dataset("cifar10", "test", data_dir=tmp_path / "data", download=False)
    assert np.array_equal(first.images, second.images) and np.array_equal(first.labels, second.labels)
    assert isinstance(second.images, np.memmap)  # memory-mapped from the .npy


def test_offline_cifar10_default_class_names_and_split_keys(tmp_path: Path, private_cache: Path) -> None:
    images, labels = _smooth_images(4, seed=1), np.arange(4)
    write_offline_cifar10(tmp_path, "train", images, labels, classes=None)
    write_offline_cifar10(tmp_path, "test", images[::-1].copy(), labels[::-1].copy(), classes=None)
    train = load_dataset("cifar10", "train", data_dir=tmp_path)
    test = load_dataset("cifar10", "test", data_dir=tmp_path)
    assert train.class_names == CIFAR10_CLASSES
    assert train.labels.tolist() == [0, 1, 2, 3] and test.labels.tolist() == [3, 2, 1, 0]  # separate cache entries
    assert len(list((private_cache / "decoded").glob("*-images.npy"))) == 2


def test_data_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_cache: Path) -> None:
    monkeypatch.delenv("CRLSC_DATA_DIR", raising=False)
    assert resolve_data_dir(None) == private_cache / "data"
    monkeypatch.setenv("CRLSC_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(None) == (tmp_path / "env").resolve()
    assert resolve_data_dir(tmp_path / "explicit") == (tmp_path / "explicit").resolve()
    assert cache_dir("sub") == private_cache / "sub" and (private_cache / "sub").is_dir()


@pytest.mark.cifar10
@pytest.mark.skipif(not (SHARED_DATA / "cifar10" / "test.npz").exists(), reason="no offline CIFAR-10 in ../shared/data")
def test_shared_offline_cifar10_test_split(private_cache: Path) -> None:
    data = load_dataset("cifar10", "test", data_dir=SHARED_DATA, download=False)
    assert data.images.shape == (10000, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.class_names == CIFAR10_CLASSES
    assert np.bincount(data.labels).tolist() == [1000] * 10
