"""Several knowledge bases searched as one (a device guided by many peers' PKBs).

Each member is searched for top-n; the union of candidates is cut to the n best by score.
Members keep their own PQ codebooks, so nothing has to be re-trained when peers change.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from crlsc_fl.kb.knowledge_base import KnowledgeBase, KnowledgeBaseError


class KnowledgeBaseUnion:
    """Duck-types the search side of :class:`KnowledgeBase` over several members."""

    def __init__(self, members: Sequence[KnowledgeBase]) -> None:
        if not members:
            raise KnowledgeBaseError("a knowledge-base union needs at least one member")
        dims = {kb.dim for kb in members}
        if len(dims) > 1:
            raise KnowledgeBaseError(f"knowledge bases of different dimensions cannot be searched together: {sorted(dims)}")
        self.members = list(members)

    @property
    def dim(self) -> int:
        return self.members[0].dim

    @property
    def count(self) -> int:
        return sum(kb.count for kb in self.members)

    @property
    def metadata(self) -> object:
        return self.members[0].metadata

    def check_dim(self, dim: int, what: str = "encoder") -> None:
        self.members[0].check_dim(dim, what)

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-n over all members: (scores, member-local ids, reconstructed vectors)."""
        if len(self.members) == 1:
            return self.members[0].search(queries, n)
        results = [kb.search(queries, n) for kb in self.members]
        scores = np.concatenate([r[0] for r in results], axis=1)
        ids = np.concatenate([r[1] for r in results], axis=1)
        vectors = np.concatenate([r[2] for r in results], axis=1)
        n = min(n, scores.shape[1])
        best = np.argsort(-scores, axis=1)[:, :n]
        rows = np.arange(len(scores))[:, None]
        return scores[rows, best], ids[rows, best], vectors[rows, best]
