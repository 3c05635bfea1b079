"""Image datasets as in-memory uint8 arrays, from offline copies or torchvision downloads.

Every loader returns an :class:`ImageDataset` with ``images`` of shape (N, H, W, 3) uint8.
Decoded arrays are cached as ``.npy`` files (memory-mapped on load), so the second load
of CIFAR-10 takes well under a second.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crlsc_fl.data.paths import cache_dir, resolve_data_dir
from crlsc_fl.data.synthetic import make_synthetic_images
from crlsc_fl.registry import Registry

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
SPLITS = ("train", "test")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on disk and could not be downloaded."""


@dataclass(frozen=True)
class ImageDataset:
    """Images (N, H, W, 3) uint8, labels (N,) int64 and the class names labels index."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be (N, H, W, 3) uint8, got {self.images.shape} {self.images.dtype}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> ImageDataset:
        return ImageDataset(self.name, self.images[indices], self.labels[indices], self.class_names)


Loader = Callable[[str, Path, bool], ImageDataset]
DATASETS: Registry[Loader] = Registry("dataset")


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    synthetic_size: int = 2000,
) -> ImageDataset:
    """Load ``name``'s ``split``. ``synthetic`` generates data and needs no directory."""
    loader = DATASETS.get(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if name == "synthetic":
        images, labels = make_synthetic_images(synthetic_size, seed=0 if split == "train" else 1)
        return ImageDataset("synthetic", images, labels, tuple(f"pattern {i}" for i in range(10)))
    return loader(split, resolve_data_dir(data_dir), download)


@DATASETS.register("synthetic")
def _synthetic(split: str, root: Path, download: bool) -> ImageDataset:  # dispatched in load_dataset
    raise AssertionError("synthetic data is generated in load_dataset")


def _cache_key(*parts: object) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:16]


def _cached_arrays(key: str, build: Callable[[], tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Return cached (images, labels) for ``key``, building and saving them on a miss."""
    folder = cache_dir("decoded")
    img_path, lab_path = folder / f"{key}-images.npy", folder / f"{key}-labels.npy"
    if img_path.exists() and lab_path.exists():
        return np.load(img_path, mmap_mode="r"), np.load(lab_path)
    images, labels = build()
    # atomic, and private to this process: a crash never leaves a half-written entry and two
    # processes decoding the same split at once do not clobber each other's temporary file
    for path, array in ((lab_path, labels), (img_path, images)):
        tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, array)
        os.replace(tmp, path)
    return np.load(img_path, mmap_mode="r"), labels


def _decode_jpeg_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    archive = np.load(path)
    jpeg, offsets, labels = archive["jpeg"], archive["offsets"], archive["labels"]
    images = np.stack(
        [
            np.asarray(Image.open(io.BytesIO(jpeg[offsets[i] : offsets[i + 1]].tobytes())).convert("RGB"))
            for i in range(len(labels))
        ]
    )
    return images.astype(np.uint8), labels.astype(np.int64)


def write_offline_cifar10(root: Path, split: str, images: np.ndarray, labels: np.ndarray, classes: list[str] | None = None) -> Path:
    """Write ``root/cifar10/<split>.npz`` in the offline format read here (jpeg/offsets/labels)."""
    from PIL import Image

    folder = Path(root) / "cifar10"
    folder.mkdir(parents=True, exist_ok=True)
    blobs = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=95)
        blobs.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8))
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    path = folder / f"{split}.npz"
    np.savez(path, jpeg=np.concatenate(blobs), offsets=offsets, labels=labels.astype(np.int64))
    if classes is not None:
        (folder / "classes.txt").write_text("\n".join(classes) + "\n")
    return path


def _missing(name: str, root: Path, expected: str, how: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"dataset {name!r} not found under {root}: expected {expected}. {how} "
        f"Set the data directory with the config key 'data-dir' or the environment variable CRLSC_DATA_DIR."
    )


def _torchvision_arrays(cls_name: str, root: Path, split_kwargs: dict, download: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    import torchvision.datasets as tvd

    dataset = getattr(tvd, cls_name)(root=str(root), download=download, **split_kwargs)
    data = np.asarray(dataset.data)
    if data.shape[1] == 3:  # STL-10 stores (N, 3, H, W)
        data = data.transpose(0, 2, 3, 1)
    labels = np.asarray(getattr(dataset, "targets", getattr(dataset, "labels", None)), dtype=np.int64)
    return np.ascontiguousarray(data, dtype=np.uint8), labels, list(dataset.classes)


def _torchvision_loader(name: str, cls_name: str, split_kwargs: Callable[[str], dict], expected: str) -> Loader:
    def load(split: str, root: Path, download: bool) -> ImageDataset:
        try:
            images, labels, classes = _torchvision_arrays(cls_name, root, split_kwargs(split), download=False)
        except RuntimeError:
            if not download:
                raise _missing(
                    name, root, expected,
                    "No download was tried (a data directory was named, or downloads are off); put the files there.",
                ) from None
            try:
                images, labels, classes = _torchvision_arrays(cls_name, root, split_kwargs(split), download=True)
            except Exception as err:  # no internet, server down...
                raise _missing(
                    name, root, expected, f"Downloading it with torchvision failed ({err.__class__.__name__}: {err})."
                ) from err
        return ImageDataset(name, images, labels, tuple(classes))

    return load


@DATASETS.register("cifar10")
def _cifar10(split: str, root: Path, download: bool) -> ImageDataset:
    offline = root / "cifar10" / f"{split}.npz"
    if offline.exists():
        stat = offline.stat()
        images, labels = _cached_arrays(
            _cache_key("cifar10", offline, stat.st_size, stat.st_mtime_ns), lambda: _decode_jpeg_npz(offline)
        )
        names_file = offline.parent / "classes.txt"
        names = tuple(names_file.read_text().split()) if names_file.exists() else CIFAR10_CLASSES
        return ImageDataset("cifar10", images, labels, names)
    return _torchvision_loader(
        "cifar10", "CIFAR10", lambda s: {"train": s == "train"},
        f"{offline} (offline format: jpeg/offsets/labels arrays) or torchvision's cifar-10-batches-py/",
    )(split, root, download)


DATASETS.register("cifar100")(
    _torchvision_loader("cifar100", "CIFAR100", lambda s: {"train": s == "train"}, "torchvision's cifar-100-python/")
)
DATASETS.register("stl10")(
    _torchvision_loader("stl10", "STL10", lambda s: {"split": s}, "torchvision's stl10_binary/")
)
