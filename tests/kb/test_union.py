"""KnowledgeBaseUnion: several KBs searched as one."""

from __future__ import annotations

import numpy as np
import pytest

from crlsc_fl.kb.knowledge_base import KBConfig, KnowledgeBase, KnowledgeBaseError
from crlsc_fl.kb.union import KnowledgeBaseUnion

FLAT = KBConfig(index_type="flat")


def _members(sizes=(30, 50, 20), dim: int = 12, seed: int = 0) -> tuple[list[KnowledgeBase], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    parts = [rng.normal(size=(n, dim)).astype(np.float32) for n in sizes]
    return [KnowledgeBase.build(p, FLAT) for p in parts], parts


@pytest.mark.parametrize("n", [1, 5, 40])
def test_union_equals_search_over_the_concatenation(n: int) -> None:
    members, parts = _members()
    union = KnowledgeBaseUnion(members)
    whole = KnowledgeBase.build(np.concatenate(parts), FLAT)
    queries = np.random.default_rng(9).normal(size=(16, 12)).astype(np.float32)

    scores, ids, vectors = union.search(queries, n)
    expected_scores, expected_ids, expected_vectors = whole.search(queries, n)
    assert scores.shape == ids.shape == (16, n) and vectors.shape == (16, n, 12)
    assert np.allclose(scores, expected_scores, atol=1e-5)
    assert np.allclose(vectors, expected_vectors, atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    # ids are local to their member: map the global ids back
    offsets = np.cumsum([0, *[len(p) for p in parts[:-1]]])
    member_of = np.searchsorted(offsets, expected_ids, side="right") - 1
    assert np.array_equal(ids, expected_ids - offsets[member_of])


def test_union_caps_n_and_reports_totals() -> None:
    members, _ = _members(sizes=(3, 4))
    union = KnowledgeBaseUnion(members)
    assert union.count == 7 and union.dim == 12 and union.metadata is members[0].metadata
    scores, ids, vectors = union.search(np.ones((2, 12), dtype=np.float32), 50)
    assert scores.shape == (2, 7) and vectors.shape == (2, 7, 12)


def test_single_member_passes_through() -> None:
    members, _ = _members(sizes=(25,))
    queries = np.random.default_rng(1).normal(size=(3, 12)).astype(np.float32)
    for a, b in zip(KnowledgeBaseUnion(members).search(queries, 4), members[0].search(queries, 4)):
        assert np.array_equal(a, b)


def test_union_errors() -> None:
    with pytest.raises(KnowledgeBaseError, match="at least one member"):
        KnowledgeBaseUnion([])
    a, _ = _members(sizes=(5,), dim=8)
    b, _ = _members(sizes=(5,), dim=12)
    with pytest.raises(KnowledgeBaseError, match=r"different dimensions .*\[8, 12\]"):
        KnowledgeBaseUnion(a + b)
    union = KnowledgeBaseUnion(b)
    with pytest.raises(KnowledgeBaseError, match="does not match"):
        union.check_dim(8)
