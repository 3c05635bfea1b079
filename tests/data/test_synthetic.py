"""The generated dataset's contract (its learnability is tested in tests/methods/test_training.py)."""

from __future__ import annotations

import numpy as np
import pytest

from crlsc_fl.data.synthetic import make_synthetic_images


@pytest.mark.parametrize(("num", "classes", "size"), [(10, 10, 32), (37, 5, 16), (200, 10, 24)])
def test_shape_dtype_balance(num: int, classes: int, size: int) -> None:
    images, labels = make_synthetic_images(num, num_classes=classes, image_size=size, seed=0)
    assert images.shape == (num, size, size, 3) and images.dtype == np.uint8
    assert labels.shape == (num,) and labels.dtype == np.int64
    counts = np.bincount(labels, minlength=classes)
    assert len(counts) == classes and counts.max() - counts.min() <= 1


def test_labels_shuffled_and_images_vary() -> None:
    images, labels = make_synthetic_images(100, seed=0)
    assert not np.array_equal(labels, np.sort(labels))
    assert not np.array_equal(labels, np.arange(100) % 10)
    assert images.std() > 20 and len({im.tobytes() for im in images}) == 100


def test_seeded() -> None:
    a, la = make_synthetic_images(30, seed=4)
    b, lb = make_synthetic_images(30, seed=4)
    c, _ = make_synthetic_images(30, seed=5)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, c)


def test_too_few_samples() -> None:
    with pytest.raises(ValueError, match="num_samples=5 must be >= num_classes=10"):
        make_synthetic_images(5)
