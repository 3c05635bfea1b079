"""What a stage-1 method needs besides its encoder and ``[train]`` settings.

A method class declares the inputs it must be given (``needs``) and those it uses when it
is given them (``optional``), as :class:`Need` values; :meth:`Stage1Method.build
<crlsc_fl.methods.base.Stage1Method.build>` checks a :class:`MethodInputs` against that
declaration. The rest of the project asks the class instead of naming methods:

- the scenario's validation refuses a ``train.kb-method`` whose needs the scenario cannot
  supply (anchors without ``kb.anchors``; peers' anchor keys without a method that takes
  them);
- the strategies' plans send the anchor set only to a method that uses anchors, and let a
  device that holds no KB yet train with its KB method when the KB is optional for it
  (:data:`PLAIN_METHOD` otherwise);
- a federated device gathers what its round's task carries into :class:`MethodInputs`
  and builds the method from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from crlsc_fl.kb.anchors import AnchorSet
from crlsc_fl.kb.knowledge_base import KnowledgeBase
from crlsc_fl.kb.union import KnowledgeBaseUnion
from crlsc_fl.models.modules.kb_fusion import FusionConfig

PLAIN_METHOD = "dcl"
"""The method of a device that is given no knowledge: the ``local`` and ``fedavg``
topologies' devices, and a device whose KB method needs a KB before it holds one."""


PAPER_METHOD = "crlsc"
"""The paper's KB-guided method (sec. 3.1): the default ``train.kb-method`` of a federation."""


class Need(StrEnum):
    """One input of a method (the field of :class:`MethodInputs` that carries it)."""

    KB = "kb"  # a knowledge base to retrieve from: the SKB or peers' PKBs
    ANCHORS = "anchors"  # the mentor's anchor set (public images with the mentor's keys)
    FUSION = "fusion"  # the retrieval and fusion settings (eq. 1-2)
    PEER_KEYS = "peer_keys"  # peers' anchor-keyed PKBs: the same anchors under each peer's keys

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self]


DESCRIPTIONS = {
    Need.KB: "a knowledge base",
    Need.ANCHORS: "anchors",
    Need.FUSION: "fusion settings",
    Need.PEER_KEYS: "peers' anchor-keyed PKBs",
}


def describe(needs: Iterable[Need]) -> str:
    """``"a knowledge base and fusion settings"``, in the order of :class:`Need`."""
    chosen = set(needs)
    names = [need.description for need in Need if need in chosen]
    return " and ".join(names) if names else "nothing"


@dataclass(frozen=True)
class MethodInputs:
    """What a device holds for its method: each field is one :class:`Need` (``None`` or
    empty: not given)."""

    kb: KnowledgeBase | KnowledgeBaseUnion | None = None
    anchors: AnchorSet | None = None
    fusion: FusionConfig | None = None
    peer_keys: tuple[AnchorSet, ...] = ()

    def given(self) -> frozenset[Need]:
        present = {Need.KB: self.kb is not None, Need.ANCHORS: self.anchors is not None,
                   Need.FUSION: self.fusion is not None, Need.PEER_KEYS: bool(self.peer_keys)}
        return frozenset(need for need, there in present.items() if there)

    def check(self, method: str, needs: frozenset[Need], optional: frozenset[Need]) -> None:
        """Refuse inputs that do not match a method's declaration: a need not given, or an
        input the method does not use (a plan that sends it would count bytes for nothing)."""
        given = self.given()
        if missing := needs - given:
            raise ValueError(f"method {method!r} needs {describe(missing)}; got none")
        if unused := given - needs - optional:
            raise ValueError(f"method {method!r} does not use {describe(unused)}; it uses {describe(needs | optional)}")
