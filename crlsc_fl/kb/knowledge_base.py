"""The knowledge base: unit vectors stored in a FAISS product-quantisation index.

Paper sec. 3.1: a vector of dimension d is split into m sub-vectors of d* = d/m dims; each
sub-space is clustered into k* = 2**nbits centroids, so a vector is stored in m*nbits bits
and the codebooks take m x d* x k* floats. SKB (server, built from S_e outputs) and PKB
(device, built from L_e outputs) are the same class.

Index types (``INDEX_TYPES``): ``pq`` (IndexPQ, exhaustive ADC search), ``ivfpq`` (IndexIVFPQ,
for large KBs; ``nprobe`` lists are scanned), ``flat`` (exact, uncompressed; a reference).
All use the inner-product metric on L2-normalised vectors (cosine similarity).

Wire format of :meth:`KnowledgeBase.to_bytes`: :mod:`crlsc_fl.kb.wire` with magic
``b"CRLSCKB1"``, the metadata as header and FAISS's own serialisation of the index as body.
The checksum catches corruption that FAISS would load silently (flipped bytes inside codes
or centroids).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Annotated, Literal, cast, get_args

import faiss
import numpy as np
from pydantic import Field

from crlsc_fl.kb import wire
from crlsc_fl.validation import component

MAGIC = b"CRLSCKB1"
IndexType = Literal["pq", "ivfpq", "flat"]
INDEX_TYPES: tuple[str, ...] = get_args(IndexType)
# the sub-vector codes of a PQ index: k* = 2**nbits centroids per sub-quantiser
CodeBits = Annotated[int, Field(ge=1, le=16)]
PositiveInt = Annotated[int, Field(ge=1)]


class KnowledgeBaseError(ValueError):
    """Bad KB bytes, a dimension mismatch, or an impossible index configuration."""


@dataclass(frozen=True)
class KBMetadata:
    """Where the vectors came from: ``source`` (e.g. ``text:imagenet-names``), ``modality``
    (text/image), ``model`` (the encoder's identity), ``dim`` and ``count``."""

    source: str
    modality: str
    model: str
    dim: int
    count: int
    index_type: str = "pq"
    extra: dict[str, object] = field(default_factory=dict)


@component
class KBConfig:
    """A KB's FAISS index parameters (paper sec. 3.1)."""

    index_type: Annotated[
        IndexType, Field(description="FAISS index: `pq` (exhaustive search), `ivfpq` (inverted lists) or `flat` (exact, uncompressed)")
    ] = "pq"
    m: Annotated[PositiveInt, Field(description="PQ sub-vectors per vector (must divide the dimension)")] = 48
    nbits: Annotated[CodeBits, Field(description="bits per sub-vector code (2**nbits centroids per sub-space)")] = 8
    nlist: Annotated[PositiveInt, Field(description="inverted lists of an `ivfpq` index")] = 256
    nprobe: Annotated[PositiveInt, Field(description="lists an `ivfpq` search scans")] = 16

    def index_settings(self) -> dict[str, object]:
        """The index fields alone (what a KB records in its metadata), also of a subclass."""
        return {f.name: getattr(self, f.name) for f in fields(KBConfig)}

    def validate(self, dim: int, count: int) -> None:
        """The checks that need the data: ``m`` divides ``dim``, enough vectors to train."""
        if self.index_type == "flat":
            return
        if dim % self.m:
            raise KnowledgeBaseError(f"kb m={self.m} must divide the vector dimension {dim}")
        if count < 2**self.nbits:
            raise KnowledgeBaseError(
                f"kb nbits={self.nbits} needs at least {2**self.nbits} training vectors, got {count}; lower nbits"
            )
        if self.index_type == "ivfpq" and count < self.nlist:
            raise KnowledgeBaseError(f"kb nlist={self.nlist} exceeds the {count} vectors; lower nlist")


def _as_matrix(vectors: np.ndarray, dim: int | None = None, name: str = "vectors") -> np.ndarray:
    array = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if array.ndim != 2:
        raise KnowledgeBaseError(f"{name} must be 2-D (N, dim), got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise KnowledgeBaseError(f"{name} have dimension {array.shape[1]}, but the knowledge base has dimension {dim}")
    return array


def _normalize(array: np.ndarray) -> np.ndarray:
    return array / np.maximum(np.linalg.norm(array, axis=1, keepdims=True), 1e-12)


class KnowledgeBase:
    """A FAISS index of unit vectors plus metadata; search returns reconstructed vectors."""

    def __init__(self, index: faiss.Index, metadata: KBMetadata) -> None:
        self.index = index
        self.metadata = metadata
        self._decoded: np.ndarray | None = None

    # -- construction -------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        config: KBConfig | None = None,
        source: str = "unknown",
        modality: str = "unknown",
        model: str = "unknown",
        seed: int = 0,
        **extra: object,
    ) -> KnowledgeBase:
        config = config or KBConfig()
        data = _normalize(_as_matrix(vectors))
        count, dim = data.shape
        config.validate(dim, count)
        metric = faiss.METRIC_INNER_PRODUCT
        if config.index_type == "flat":
            index: faiss.Index = faiss.IndexFlatIP(dim)
        elif config.index_type == "pq":
            index = faiss.IndexPQ(dim, config.m, config.nbits, metric)
        else:
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFPQ(quantizer, dim, config.nlist, config.m, config.nbits, metric)
            index.nprobe = config.nprobe
        if not index.is_trained:
            _configure_clustering(index, seed)
            index.train(data)
        index.add(data)
        if isinstance(index, faiss.IndexIVFPQ):  # config.index_type == "ivfpq"
            index.make_direct_map()  # lets reconstruct() find vectors by id
        meta = KBMetadata(source, modality, model, dim, count, config.index_type, dict(extra, **config.index_settings()))
        return cls(index, meta)

    # -- properties ---------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.index.d

    @property
    def count(self) -> int:
        return self.index.ntotal

    def nbytes(self) -> int:
        return len(self.to_bytes())

    def bytes_per_vector(self) -> float:
        """Serialised size per stored vector (codes plus the amortised codebooks)."""
        return self.nbytes() / max(self.count, 1)

    def code_bytes_per_vector(self) -> int:
        """Bytes of one stored code (m*nbits/8 for PQ; 4*dim uncompressed)."""
        return int(self.index.sa_code_size())

    # -- search -------------------------------------------------------------------------
    def check_dim(self, dim: int, what: str = "encoder") -> None:
        if dim != self.dim:
            raise KnowledgeBaseError(
                f"{what} output dimension {dim} does not match the knowledge base dimension {self.dim} "
                f"({self.metadata.source}); set the encoder dim to {self.dim}"
            )

    def decoded_vectors(self) -> np.ndarray:
        """All stored vectors as reconstructed from their codes, (count, dim), cached."""
        if self._decoded is None:
            self._decoded = self.index.reconstruct_n(0, self.count)
        return self._decoded

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-n by inner product: (scores (B, n), ids (B, n), reconstructed vectors (B, n, dim)).

        When the KB holds fewer than n vectors, n is capped at the count.
        """
        data = _as_matrix(queries, self.dim, name="queries")
        n = min(n, self.count)
        if self._exhaustive():
            scores, ids = self._scan(data, n)
        else:
            scores, ids = self.index.search(data, n)
            # IVF can return -1 when the probed lists hold fewer than n vectors; fall back to id 0.
            ids = np.where(ids < 0, 0, ids)
        return scores, ids, self.decoded_vectors()[ids]

    def _exhaustive(self) -> bool:
        """A flat or PQ index scores every vector: FAISS's asymmetric distance for the inner
        product is the query's inner product with each vector's PQ reconstruction."""
        return isinstance(self.index, faiss.IndexFlat | faiss.IndexPQ) and self.index.metric_type == faiss.METRIC_INNER_PRODUCT

    def _scan(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The same top-n as FAISS's exhaustive search, from the reconstructions decoded once
        per KB: one matrix product instead of per-query distance tables (3.4x faster for a
        training step's 32 queries over 5,000 PQ codes; same neighbours, scores within 2e-7)."""
        scores = queries @ self.decoded_vectors().T
        top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        return np.take_along_axis(top_scores, order, axis=1), np.take_along_axis(top, order, axis=1)

    # -- serialisation ------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        return wire.pack(MAGIC, asdict(self.metadata), faiss.serialize_index(self.index).tobytes())

    @classmethod
    def from_bytes(cls, blob: bytes | np.ndarray) -> KnowledgeBase:
        try:
            header, body = wire.unpack(MAGIC, blob, "knowledge base")
            meta = KBMetadata(**header)
            index = faiss.deserialize_index(np.frombuffer(body, dtype=np.uint8))
        except Exception as err:  # faiss raises RuntimeError with C++ traces on garbage
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            if not isinstance(err, wire.WireFormatError):
                message = f"corrupt knowledge base bytes: {message}"
            raise KnowledgeBaseError(message) from None
        if index.d != meta.dim or index.ntotal != meta.count:
            raise KnowledgeBaseError(
                f"knowledge base header says dim={meta.dim}, count={meta.count}, index has d={index.d}, ntotal={index.ntotal}"
            )
        if isinstance(index, faiss.IndexIVFPQ):
            index.make_direct_map()
            index.nprobe = int(cast(int, meta.extra.get("nprobe", 16)))
        return cls(index, meta)


def _configure_clustering(index: faiss.Index, seed: int) -> None:
    """Seed k-means (deterministic builds) and accept small KBs without FAISS's warning
    about fewer than 39 points per centroid (text KBs of a few hundred prompts are normal)."""
    for params in (getattr(getattr(index, "pq", None), "cp", None), getattr(index, "cp", None)):
        if params is not None:
            params.seed = seed
            params.min_points_per_centroid = 1
