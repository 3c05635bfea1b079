"""Bring a server model's vectors to the device dimension: PCA, fitted on the server.

The mentor's features (1280-d for EfficientNet-Lite, 512-d for CLIP ViT-B/32, 384-d for
MiniLM) are larger than a small device's projection needs, and raw CNN features are
uncentred (every pair of images has a high cosine), which flattens retrieval and attention.
The server therefore centres them, keeps the top ``dim`` principal directions and
L2-normalises the result: the SKB lives in this space, and so do the anchor keys that
ground the devices in it. Only the projected vectors leave the server.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PCAProjection:
    """x -> unit((x - mean) @ components.T); ``components`` is (dim, D), rows orthonormal."""

    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: float

    @classmethod
    def fit(cls, vectors: np.ndarray, dim: int) -> PCAProjection:
        data = np.asarray(vectors, dtype=np.float64)
        if data.ndim != 2:
            raise ValueError(f"PCA needs a 2-D (N, D) array, got shape {data.shape}")
        if not 1 <= dim <= min(data.shape):
            raise ValueError(f"PCA dim={dim} out of range [1, {min(data.shape)}] for {data.shape[0]} vectors of {data.shape[1]} dims")
        mean = data.mean(axis=0)
        _, singular, vt = np.linalg.svd(data - mean, full_matrices=False)
        energy = singular**2
        return cls(mean.astype(np.float32), vt[:dim].astype(np.float32), float(energy[:dim].sum() / energy.sum()))

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        projected = (np.asarray(vectors, dtype=np.float32) - self.mean) @ self.components.T
        return np.ascontiguousarray(projected / np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12))
