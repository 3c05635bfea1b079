"""The FAISS knowledge base: recall against exact search, serialisation, validation errors."""

from __future__ import annotations

import json
import re
import struct

import numpy as np
import pytest

from crlsc_fl.kb.knowledge_base import INDEX_TYPES, MAGIC, KBConfig, KnowledgeBase, KnowledgeBaseError
from crlsc_fl.validation import ConfigError, build_component

DIM = 64
CONFIGS = {
    "pq": KBConfig(index_type="pq", m=DIM // 8, nbits=8),
    "ivfpq": KBConfig(index_type="ivfpq", m=DIM // 8, nbits=8, nlist=32, nprobe=8),
    "flat": KBConfig(index_type="flat"),
}


def clustered(n: int, seed: int, clusters: int = 200, noise: float = 0.5) -> np.ndarray:
    """Points around 200 fixed random centres (about 10 per centre for n = 2000)."""
    centres = np.random.default_rng(1234).normal(size=(clusters, DIM))
    rng = np.random.default_rng(seed)
    return (centres[rng.integers(0, clusters, n)] + noise * rng.normal(size=(n, DIM))).astype(np.float32)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return clustered(2000, seed=0)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return clustered(200, seed=1)


@pytest.fixture(scope="module")
def kbs(data) -> dict[str, KnowledgeBase]:
    return {name: KnowledgeBase.build(data, config, source="test", modality="image", model="random") for name, config in CONFIGS.items()}


def recall_at_10(ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean fraction of the exact top-10 that the approximate top-10 finds."""
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact_ids)]))


def test_index_types() -> None:
    assert sorted(INDEX_TYPES) == ["flat", "ivfpq", "pq"]


@pytest.mark.parametrize(("name", "threshold"), [("pq", 0.7), ("ivfpq", 0.7), ("flat", 1.0)])
def test_recall_at_10_against_exact_search(kbs, queries, name: str, threshold: float) -> None:
    _, exact_ids, _ = kbs["flat"].search(queries, 10)
    # the flat index is exact: compare with numpy too
    numpy_ids = np.argsort(-(unit(queries) @ unit(kbs["flat"].decoded_vectors()).T), axis=1)[:, :10]
    assert recall_at_10(exact_ids, numpy_ids) > 0.99
    _, ids, _ = kbs[name].search(queries, 10)
    assert recall_at_10(ids, exact_ids) >= threshold


@pytest.mark.parametrize("name", list(CONFIGS))
def test_search_returns_reconstructed_vectors(kbs, data, queries, name: str) -> None:
    kb = kbs[name]
    scores, ids, vectors = kb.search(queries[:7], 5)
    assert scores.shape == ids.shape == (7, 5) and vectors.shape == (7, 5, DIM)
    assert np.all(np.diff(scores, axis=1) <= 1e-5)  # best first
    assert np.array_equal(vectors, kb.decoded_vectors()[ids])
    # scores are inner products of the query with the stored (reconstructed) vectors
    assert np.allclose(scores, np.einsum("bd,bnd->bn", queries[:7], vectors), rtol=1e-4, atol=1e-3)
    cosine = (vectors * unit(data)[ids]).sum(-1)  # reconstructions point where the originals do
    if name == "flat":
        assert np.allclose(cosine, 1.0, atol=1e-5)
    else:  # PQ: 8 bytes per 64-d vector
        assert cosine.mean() > 0.8 and cosine.min() > 0.5


@pytest.mark.parametrize("name", list(CONFIGS))
def test_search_caps_n_at_count(name: str) -> None:
    vectors = np.random.default_rng(0).normal(size=(40, 16))
    config = KBConfig(index_type=name, m=4, nbits=4, nlist=2, nprobe=2)
    kb = KnowledgeBase.build(vectors, config)
    _, ids, out = kb.search(vectors[:3], 100)
    assert ids.shape == (3, 40) and out.shape == (3, 40, 16)
    assert np.all(ids >= 0)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_serialisation_round_trip_is_byte_exact(kbs, queries, name: str) -> None:
    blob = kbs[name].to_bytes()
    assert blob.startswith(MAGIC)
    loaded = KnowledgeBase.from_bytes(blob)
    assert loaded.to_bytes() == blob
    assert KnowledgeBase.from_bytes(np.frombuffer(blob, dtype=np.uint8)).to_bytes() == blob
    assert loaded.metadata == kbs[name].metadata
    assert (loaded.dim, loaded.count) == (DIM, 2000)
    s0, i0, v0 = kbs[name].search(queries[:20], 10)
    s1, i1, v1 = loaded.search(queries[:20], 10)
    assert np.array_equal(i0, i1) and np.allclose(s0, s1) and np.allclose(v0, v1)


def test_metadata_and_sizes(kbs) -> None:
    pq = kbs["pq"]
    assert pq.metadata.source == "test" and pq.metadata.modality == "image" and pq.metadata.model == "random"
    assert pq.metadata.extra["m"] == 8 and pq.metadata.extra["nbits"] == 8
    assert pq.code_bytes_per_vector() == 8  # m * nbits / 8
    assert kbs["flat"].code_bytes_per_vector() == 4 * DIM
    assert pq.nbytes() == len(pq.to_bytes()) and pq.bytes_per_vector() == pq.nbytes() / 2000
    assert pq.nbytes() < kbs["flat"].nbytes() / 4


def test_build_is_deterministic(data) -> None:
    config = KBConfig(m=8, nbits=6)
    assert KnowledgeBase.build(data[:500], config).to_bytes() == KnowledgeBase.build(data[:500], config).to_bytes()


def _blob() -> bytes:
    vectors = np.random.default_rng(0).normal(size=(300, 16))
    return KnowledgeBase.build(vectors, KBConfig(m=4, nbits=4)).to_bytes()


def _body_start(blob: bytes) -> int:
    (header_len,) = struct.unpack("<I", blob[len(MAGIC) : len(MAGIC) + 4])
    return len(MAGIC) + 4 + header_len


def _with_header(blob: bytes, **changes: object) -> bytes:
    start = _body_start(blob)
    header = json.loads(blob[len(MAGIC) + 4 : start]) | changes
    encoded = json.dumps(header).encode()
    return MAGIC + struct.pack("<I", len(encoded)) + encoded + blob[start:]


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda b: b"", "not a crlsc_fl knowledge base"),
        (lambda b: b"garbage!" * 40, "not a crlsc_fl knowledge base"),
        (lambda b: b"PK\x03\x04" + b[4:], "not a crlsc_fl knowledge base"),
        (lambda b: b[: len(MAGIC) + 2], "not a crlsc_fl knowledge base"),
        (lambda b: b[: len(b) // 2], "corrupt knowledge base bytes"),  # truncated
        (lambda b: b[: _body_start(b) + 10], "corrupt knowledge base bytes"),  # truncated body
        (lambda b: b[: _body_start(b)], "corrupt knowledge base bytes"),  # no body
        (lambda b: b[: _body_start(b) - 5], "corrupt knowledge base bytes"),  # truncated header
        (lambda b: b[: _body_start(b)] + b"XXXX" + b[_body_start(b) + 4 :], "corrupt knowledge base bytes"),  # body type
        (lambda b: b[: _body_start(b)] + bytes(len(b) - _body_start(b)), "corrupt knowledge base bytes"),  # zeroed body
        (lambda b: b[:12] + b"{" * (_body_start(b) - 12) + b[_body_start(b) :], "corrupt knowledge base bytes"),
        (lambda b: _with_header(b, dim=17), "header says dim=17"),
        (lambda b: _with_header(b, count=5), "count=5"),
        (lambda b: _with_header(b, unexpected_field=1), "corrupt knowledge base bytes"),
        (lambda b: b[:-20] + bytes(b[-20] ^ 0xFF for _ in range(1)) + b[-19:], "body_sha256 checksum"),  # flipped code byte
    ],
)
def test_bad_bytes_raise_knowledge_base_error(corrupt, message: str) -> None:
    with pytest.raises(KnowledgeBaseError, match=message) as info:
        KnowledgeBase.from_bytes(corrupt(_blob()))
    assert "\n" not in str(info.value)  # one line, not a C++ trace


def test_dimension_mismatch(kbs) -> None:
    kb = kbs["pq"]
    kb.check_dim(DIM)
    with pytest.raises(KnowledgeBaseError, match=r"encoder output dimension 32 does not match the knowledge base dimension 64"):
        kb.check_dim(32)
    with pytest.raises(KnowledgeBaseError, match="queries have dimension 32, but the knowledge base has dimension 64"):
        kb.search(np.zeros((2, 32), dtype=np.float32), 3)
    with pytest.raises(KnowledgeBaseError, match="must be 2-D"):
        kb.search(np.zeros(DIM, dtype=np.float32), 3)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"index-type": "hnsw"}, "kb.index-type='hnsw': Input should be 'pq', 'ivfpq' or 'flat'"),
        ({"m": 0}, "kb.m=0: Input should be greater than or equal to 1"),
        ({"nbits": 0}, "kb.nbits=0: Input should be greater than or equal to 1"),
        ({"nbits": 17}, "kb.nbits=17: Input should be less than or equal to 16"),
        ({"nbits": 8.0}, "kb.nbits=8.0: Input should be a valid integer"),
    ],
)
def test_bad_settings_name_the_key_and_what_is_allowed(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_component(KBConfig, values, "kb")


@pytest.mark.parametrize(
    ("config", "count", "message"),
    [
        (KBConfig(m=5, nbits=4), 100, "m=5 must divide the vector dimension 16"),
        (KBConfig(m=4, nbits=8), 100, "nbits=8 needs at least 256 training vectors, got 100"),
        (KBConfig(index_type="ivfpq", m=4, nbits=4, nlist=256), 100, "nlist=256 exceeds the 100 vectors"),
    ],
)
def test_impossible_configurations(config: KBConfig, count: int, message: str) -> None:
    with pytest.raises(KnowledgeBaseError, match=message):
        KnowledgeBase.build(np.random.default_rng(0).normal(size=(count, 16)), config)


def test_flat_accepts_any_size() -> None:
    kb = KnowledgeBase.build(np.random.default_rng(0).normal(size=(3, 7)), KBConfig(index_type="flat", m=5, nbits=12))
    assert (kb.count, kb.dim) == (3, 7)


def test_vectors_are_normalised(data) -> None:
    kb = KnowledgeBase.build(data[:50] * 10, KBConfig(index_type="flat"))
    assert np.allclose(np.linalg.norm(kb.decoded_vectors(), axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(("index_type", "scanned"), [("pq", True), ("flat", True), ("ivfpq", False)])
def test_exhaustive_indexes_are_scanned_with_faiss_neighbours(index_type: str, scanned: bool) -> None:
    """Flat and PQ indexes are searched by one product with the decoded vectors; the
    neighbours and scores must be FAISS's own."""
    vectors = unit(clustered(3000, seed=3))
    config = KBConfig(index_type=index_type, m=8, nbits=6, nlist=16, nprobe=4)
    kb = KnowledgeBase.build(vectors, config)
    assert kb._exhaustive() is scanned
    queries = unit(clustered(40, seed=4))
    scores, ids, values = kb.search(queries, 10)
    faiss_scores, faiss_ids = kb.index.search(queries, 10)
    # the same top-n scores; where ids differ they tie (vectors with identical PQ codes)
    assert np.allclose(scores, faiss_scores, atol=1e-5)
    assert np.allclose(np.einsum("bd,bnd->bn", queries, kb.decoded_vectors()[faiss_ids]), scores, atol=1e-5)
    assert (ids == faiss_ids).mean() > 0.8
    assert np.allclose(values, kb.decoded_vectors()[ids])
