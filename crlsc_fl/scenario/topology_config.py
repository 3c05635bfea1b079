"""How the topologies connect devices (the scenario's ``[topology]`` table).

``cloud-edge``: ``edges`` edge servers relay the mentor's knowledge. ``p2p``: a peer
``graph`` (``strategies.graphs``: ring, k-regular with ``degree``, small-world with
``degree`` and ``rewire_p``, Erdos-Renyi with ``edge_p``), started from local training or
the SKB (``p2p_warmup``). ``hybrid``: devices of the ``hybrid_mentors`` architectures
mentor the others. ``peer_knowledge``: what a device returns for its peers, the paper's
PKB for retrieval, its anchor-keyed PKB (grounding targets; needs ``crlsc-grounded``) or
random keys of that shape (the control).
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field

from crlsc_fl.models.encoders import ENCODERS
from crlsc_fl.validation import component, name_list, registered

P2PWarmup = Literal["local", "skb"]
PeerKnowledge = Literal["pkb", "anchor-pkb", "random-anchor-pkb"]
PEER_KNOWLEDGE: tuple[str, ...] = get_args(PeerKnowledge)
Probability = Annotated[float, Field(ge=0, le=1)]


def graph_names() -> list[str]:
    """The registered peer graphs (imported when validated: the strategies import the config)."""
    from strategies.graphs import GRAPHS

    return GRAPHS.names()


@component
class TopologyConfig:
    edges: Annotated[int, Field(ge=1)] = 10
    graph: registered(graph_names) = "ring"  # type: ignore[valid-type]
    degree: Annotated[int, Field(ge=1)] = 4
    rewire_p: Probability = 0.1
    edge_p: Annotated[float, Field(gt=0, le=1)] = 0.05
    p2p_warmup: P2PWarmup = "local"
    hybrid_mentors: name_list(ENCODERS.names) = ("resnet50", "resnet34")  # type: ignore[valid-type]
    peer_knowledge: PeerKnowledge = "pkb"
