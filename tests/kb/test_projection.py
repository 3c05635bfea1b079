"""PCA projection of server vectors to the device dimension."""

from __future__ import annotations

import numpy as np
import pytest

from crlsc_fl.kb.projection import PCAProjection


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    # 4 clusters in 64-d with a large common offset (uncentred, like CNN features)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 64)) * 3
    return (5.0 + centres[np.arange(400) % 4] + rng.normal(size=(400, 64))).astype(np.float32)


@pytest.mark.parametrize("dim", [2, 8, 32])
def test_outputs_are_unit_and_components_orthonormal(vectors: np.ndarray, dim: int) -> None:
    projection = PCAProjection.fit(vectors, dim)
    out = projection(vectors)
    assert out.shape == (len(vectors), dim) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(projection.components @ projection.components.T, np.eye(dim), atol=1e-5)
    assert 0 < projection.explained_variance_ratio <= 1


def test_centring_removes_the_common_offset_and_keeps_clusters(vectors: np.ndarray) -> None:
    raw = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    out = PCAProjection.fit(vectors, 8)(vectors)
    labels = np.arange(len(vectors)) % 4
    different = labels[:, None] != labels[None, :]
    assert (raw @ raw.T)[different].mean() > 0.5  # uncentred: everything looks alike
    assert (out @ out.T)[different].mean() < 0.0  # centred: other clusters point away
    nearest = np.argsort(-(out @ out.T), axis=1)[:, 1]
    assert (labels[nearest] == labels).mean() > 0.95


def test_more_dimensions_explain_more(vectors: np.ndarray) -> None:
    assert PCAProjection.fit(vectors, 2).explained_variance_ratio < PCAProjection.fit(vectors, 16).explained_variance_ratio


@pytest.mark.parametrize("dim", [0, 65])
def test_bad_dim(vectors: np.ndarray, dim: int) -> None:
    with pytest.raises(ValueError, match=f"PCA dim={dim} out of range"):
        PCAProjection.fit(vectors, dim)
