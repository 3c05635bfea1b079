"""Build PKBs (from a trained device encoder; also keyed by the public anchors), and the on-disk cache of built KBs.

A cached KB is stored under ``cache_dir("kb")/<key>.kb`` where the key hashes everything the
vectors depend on, so the server builds a given SKB (:mod:`crlsc_fl.kb.mentor`) once per machine.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field

from crlsc_fl.data.paths import cache_dir
from crlsc_fl.eval.features import encode_images
from crlsc_fl.kb.anchors import AnchorSet
from crlsc_fl.kb.knowledge_base import CodeBits, KBConfig, KnowledgeBase, KnowledgeBaseError
from crlsc_fl.models.encoders import LocalEncoder
from crlsc_fl.validation import component


def content_key(*parts: object) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.tobytes() if isinstance(part, np.ndarray) else repr(part).encode())
        digest.update(b"\x00")
    return digest.hexdigest()[:24]


def cached_kb(key: str, build: Callable[[], KnowledgeBase], use_cache: bool = True) -> KnowledgeBase:
    """Load the KB cached under ``key`` or build and cache it (atomic write)."""
    path = cache_dir("kb") / f"{key}.kb"
    if use_cache and path.exists():
        try:
            return KnowledgeBase.from_bytes(path.read_bytes())
        except KnowledgeBaseError as err:  # a damaged cache entry is rebuilt, not fatal
            warnings.warn(f"rebuilding the damaged cached knowledge base {path}: {err}", stacklevel=2)
    kb = build()
    if use_cache:
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(kb.to_bytes())
        os.replace(tmp, path)
    return kb


@component
class PKBConfig(KBConfig):
    """The devices' PKB index (the scenario's ``[pkb]`` table): the :class:`KBConfig` fields,
    fitted to each shard by :meth:`for_shard` (``m`` falls back to 1 where it does not divide
    the dimension), and how many images go in. ``nlist`` follows the shard (one list per ~39
    vectors, faiss's guideline), so it is no scenario key."""

    nbits: Annotated[
        CodeBits, Field(description="bits per sub-vector code, capped at log2 of the shard's size (PQ needs 2**nbits training vectors)")
    ] = 6
    nlist: int = Field(default=256, ge=1, exclude=True)
    samples: Annotated[int, Field(ge=0, description="images of its shard a device encodes into its PKB (0: the whole shard)")] = 0

    def for_shard(self, dim: int, count: int) -> KBConfig:
        """The index for ``count`` vectors of dimension ``dim``: PQ needs at least 2**nbits
        training vectors, so small shards get fewer centroids; an ``m`` that does not divide
        ``dim`` falls back to 1 sub-vector."""
        return KBConfig(
            self.index_type, self.m if dim % self.m == 0 else 1, min(self.nbits, int(math.log2(count))),
            nlist=max(1, count // 39), nprobe=self.nprobe,
        )


def build_pkb(
    encoder: LocalEncoder, images: np.ndarray, config: KBConfig | None = None, source: str = "device", **extra: Any
) -> KnowledgeBase:
    """PKB: a trained device encoder's projections q of its private images (paper sec. 3.1).

    Not cached: the encoder changes every round.
    """
    config = config or KBConfig()
    vectors = encode_images(encoder, images, kind="projection").numpy()
    return KnowledgeBase.build(
        vectors, config, source=f"pkb:{source}", modality="image", model=f"local:{encoder.arch}", **extra
    )


def build_anchor_pkb(encoder: LocalEncoder, anchors: AnchorSet, source: str = "device") -> AnchorSet:
    """A device's anchor-keyed PKB (beyond the paper): its unit projections of the server's
    public anchor images, in anchor order.

    It says how the device, after training on its private images, sees the public images
    every device holds; a peer aligns to it as to the mentor's keys (the ``peer_anchors`` of
    :class:`crlsc_fl.methods.grounded.GroundedCRLSCMethod`). Only these vectors need to cross the network: the receiver has the
    images. Private images never leave the device.
    """
    keys = torch.nn.functional.normalize(encode_images(encoder, anchors.images, kind="projection"), dim=1)
    return anchors.with_keys(keys.numpy(), source=f"anchor-pkb:{source}")
