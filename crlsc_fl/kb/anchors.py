"""Anchor sets: public images with their SKB vectors, the grounding that makes retrieval mean
something (an extension beyond the paper).

A device has no way to place its own images in the mentor's space from the SKB alone: the
SKB holds the mentor's vectors, not the images they came from. The server therefore sends,
with the SKB, a small set of public images (JPEG) and their keys, i.e. the same projected
mentor vectors that the SKB stores. The device learns to map an anchor image onto its key
(:class:`crlsc_fl.loss.anchor_alignment_loss.AnchorAlignmentLoss`), so that its queries land
near the mentor's vectors of similar images and top-n retrieval returns the mentor's
neighbours of its own images. Only public data crosses the network.

Wire format: :mod:`crlsc_fl.kb.wire` with magic ``b"CRLSCAN1"``; body = the JPEG files
concatenated, then the keys as float16. Keys of a text mentor are class prompts, so many
anchors may share one key: :meth:`AnchorSet.targets` deduplicates them.

A device's **anchor-keyed PKB** (its own view of the same anchor images, see
:func:`crlsc_fl.kb.builders.build_anchor_pkb`) travels as keys alone (magic
``b"CRLSCAK1"``, float16), since the receiver holds the images: :meth:`AnchorSet.keys_to_bytes`
and :meth:`AnchorSet.keys_from_bytes`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from crlsc_fl.kb import wire

MAGIC = b"CRLSCAN1"
KEYS_MAGIC = b"CRLSCAK1"


class AnchorSetError(ValueError):
    """Bad anchor-set bytes, or images and keys that do not fit together."""


@dataclass
class AnchorSet:
    """``images`` (N, H, W, 3) uint8 and their unit ``keys`` (N, dim) float32."""

    images: np.ndarray
    keys: np.ndarray
    source: str = ""
    jpeg_quality: int = 90
    _targets: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.images = np.ascontiguousarray(self.images, dtype=np.uint8)
        self.keys = np.ascontiguousarray(self.keys, dtype=np.float32)
        if self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise AnchorSetError(f"anchor images must be (N, H, W, 3) uint8, got shape {self.images.shape}")
        if self.keys.ndim != 2 or len(self.keys) != len(self.images):
            raise AnchorSetError(f"anchor keys must be (N, dim) with N = {len(self.images)} images, got shape {self.keys.shape}")
        if len(self.images) < 2:
            raise AnchorSetError(f"an anchor set needs at least 2 anchors, got {len(self.images)}")
        if not 1 <= self.jpeg_quality <= 95:
            raise AnchorSetError(f"jpeg_quality={self.jpeg_quality} out of range [1, 95]")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def dim(self) -> int:
        return int(self.keys.shape[1])

    def targets(self) -> tuple[np.ndarray, np.ndarray]:
        """(unique keys (K, dim), index (N,) of each anchor's key among them)."""
        if self._targets is None:
            unique, index = np.unique(self.keys, axis=0, return_inverse=True)
            self._targets = (np.ascontiguousarray(unique), index.reshape(-1).astype(np.int64))
        return self._targets

    def with_keys(self, keys: np.ndarray, source: str) -> AnchorSet:
        """The same images keyed by other vectors (a device's anchor-keyed PKB)."""
        return AnchorSet(self.images, keys, source=source, jpeg_quality=self.jpeg_quality)

    def check_dim(self, dim: int, what: str = "encoder") -> None:
        if dim != self.dim:
            raise AnchorSetError(f"{what} output dimension {dim} does not match the anchor keys' dimension {self.dim} ({self.source})")

    # -- serialisation ------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        files = []
        for image in self.images:
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="JPEG", quality=self.jpeg_quality)
            files.append(buffer.getvalue())
        offsets = np.cumsum([0] + [len(f) for f in files]).tolist()
        header = {"source": self.source, "count": len(self), "dim": self.dim, "shape": list(self.images.shape[1:]),
                  "jpeg_quality": self.jpeg_quality, "offsets": offsets}
        return wire.pack(MAGIC, header, b"".join(files) + self.keys.astype(np.float16).tobytes())

    def keys_to_bytes(self) -> bytes:
        """The keys alone (float16), for a receiver that holds these anchor images."""
        header = {"source": self.source, "count": len(self), "dim": self.dim}
        return wire.pack(KEYS_MAGIC, header, self.keys.astype(np.float16).tobytes())

    def keys_from_bytes(self, blob: bytes | np.ndarray) -> AnchorSet:
        """These anchor images keyed by the keys in ``blob`` (written by :meth:`keys_to_bytes`
        for an anchor set of the same count)."""
        try:
            header, body = wire.unpack(KEYS_MAGIC, blob, "anchor-keyed PKB")
            count, dim = int(header["count"]), int(header["dim"])
            keys = np.frombuffer(body, dtype=np.float16).reshape(count, dim).astype(np.float32)
        except Exception as err:
            raise AnchorSetError(f"corrupt anchor-keyed PKB bytes: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
        if count != len(self):
            raise AnchorSetError(f"anchor-keyed PKB {header['source']!r} keys {count} anchors, this anchor set holds {len(self)}")
        return self.with_keys(keys, source=str(header["source"]))

    @classmethod
    def from_bytes(cls, blob: bytes | np.ndarray) -> AnchorSet:
        try:
            header, body = wire.unpack(MAGIC, blob, "anchor set")
            count, dim, offsets = int(header["count"]), int(header["dim"]), header["offsets"]
            jpeg_end = offsets[-1]
            keys = np.frombuffer(body[jpeg_end:], dtype=np.float16).reshape(count, dim).astype(np.float32)
            images = np.stack([
                np.asarray(Image.open(io.BytesIO(body[offsets[i] : offsets[i + 1]])).convert("RGB")) for i in range(count)
            ])
        except AnchorSetError:
            raise
        except Exception as err:
            raise AnchorSetError(f"corrupt anchor set bytes: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
        if list(images.shape[1:]) != list(header["shape"]):
            raise AnchorSetError(f"anchor images decode to {images.shape[1:]}, header says {header['shape']}")
        return cls(images, keys, source=header["source"], jpeg_quality=int(header["jpeg_quality"]))


def select_anchors(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Indices of ``count`` anchors, stratified by label (as equal per class as possible), sorted."""
    labels = np.asarray(labels)
    if not 1 <= count <= len(labels):
        raise ValueError(f"anchor count={count} out of range [1, {len(labels)}] (the public split's size)")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    chosen: list[int] = []
    round_index = 0
    while len(chosen) < count:  # round-robin over classes keeps strata balanced
        for members in per_class:
            if round_index < len(members) and len(chosen) < count:
                chosen.append(int(members[round_index]))
        round_index += 1
    return np.sort(np.asarray(chosen))
