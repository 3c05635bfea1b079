"""How the topologies connect devices (the scenario's ``[topology]`` table).

``cloud-edge``: ``edges`` edge servers relay the mentor's knowledge. ``p2p``: a peer
``graph`` (:mod:`crlsc_fl.scenario.graphs`: ring, k-regular with ``degree``, small-world with
``degree`` and ``rewire_p``, Erdos-Renyi with ``edge_p``), started from local training or
the SKB (``p2p_warmup``). ``hybrid``: devices of the ``hybrid_mentors`` architectures
mentor the others. ``peer_knowledge``: what a device returns for its peers, the paper's
PKB for retrieval, its anchor-keyed PKB (grounding targets; needs a ``train.kb-method``
that takes peers' keys) or random keys of that shape (the control).
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field

from crlsc_fl.models.encoders import ENCODERS
from crlsc_fl.scenario.graphs import GRAPHS
from crlsc_fl.validation import component, name_list, registered

P2PWarmup = Literal["local", "skb"]
PeerKnowledge = Literal["pkb", "anchor-pkb", "random-anchor-pkb"]
PEER_KNOWLEDGE: tuple[str, ...] = get_args(PeerKnowledge)
Probability = Annotated[float, Field(ge=0, le=1)]


@component
class TopologyConfig:
    """How each topology connects the devices (module docstring)."""

    edges: Annotated[int, Field(ge=1, description="`cloud-edge`: edge servers that relay the mentor's knowledge")] = 10
    graph: Annotated[
        str, registered(GRAPHS.names),
        Field(description="`p2p`: the peer graph, `ring`, `k-regular` (with `degree`), `small-world` (`degree`, `rewire-p`) "
                          "or `erdos-renyi` (`edge-p`)"),
    ] = "ring"
    degree: Annotated[int, Field(ge=1, description="neighbours per device of the `k-regular` and `small-world` graphs")] = 4
    rewire_p: Annotated[Probability, Field(description="rewiring probability of the `small-world` graph")] = 0.1
    edge_p: Annotated[float, Field(gt=0, le=1, description="edge probability of the `erdos-renyi` graph")] = 0.05
    p2p_warmup: Annotated[
        P2PWarmup, Field(description="what `p2p` devices start from: local training (`local`) or the SKB (`skb`)")
    ] = "local"
    hybrid_mentors: Annotated[
        tuple[str, ...], name_list(ENCODERS.names),
        Field(description="`hybrid`: the architectures whose devices mentor the others (comma-separated)"),
    ] = ("resnet50", "resnet34")
    peer_knowledge: Annotated[
        PeerKnowledge,
        Field(description="what `p2p` neighbours and `hybrid` mentors pass on: `pkb` (the paper's PKB, for retrieval), "
                          "`anchor-pkb` (their view of the anchors, float16 keys; receivers align to it instead of the mentor's "
                          "keys; needs `crlsc-grounded`) or `random-anchor-pkb` (random unit keys of the same shape: the control)"),
    ] = "pkb"
