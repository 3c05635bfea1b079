"""Peer graphs: seeded, connected, of the stated degree; impossible ones fail clearly."""

from __future__ import annotations

import networkx as nx
import pytest

from crlsc_fl.scenario.graphs import neighbours, peer_graph
from crlsc_fl.scenario.topology_config import TopologyConfig


@pytest.mark.parametrize(
    ("graph", "extra", "degree"),
    [("ring", {}, 2), ("k-regular", {"degree": 4}, 4), ("k-regular", {"degree": 3}, 3)],
)
@pytest.mark.parametrize("n", [10, 20])
def test_regular_graphs_have_the_stated_degree(graph: str, extra: dict, degree: int, n: int) -> None:
    g = peer_graph(n, TopologyConfig(graph=graph, **extra), seed=0)
    assert {d for _, d in g.degree} == {degree}
    assert nx.is_connected(g)


@pytest.mark.parametrize("graph", ["small-world", "erdos-renyi"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_graphs_are_connected_and_seeded(graph: str, seed: int) -> None:
    topo = TopologyConfig(graph=graph, degree=4, edge_p=0.1)
    g = peer_graph(40, topo, seed)
    assert nx.is_connected(g)
    assert neighbours(g) == neighbours(peer_graph(40, topo, seed))


def test_impossible_k_regular_and_unknown_graph_fail_clearly() -> None:
    with pytest.raises(ValueError, match="degree=3"):
        peer_graph(5, TopologyConfig(graph="k-regular", degree=3), 0)
    with pytest.raises(ValueError, match="graph\n.*not allowed; valid: erdos-renyi, k-regular, ring, small-world"):
        TopologyConfig(graph="star")
