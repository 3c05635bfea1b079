"""Peer graphs for device-to-device transfer (seeded, undirected, connected).

- ``ring``: each device talks to its two neighbours (degree 2).
- ``k-regular``: a random k-regular graph (every degree = ``topology.degree``).
- ``small-world``: Watts-Strogatz, ``degree`` nearest neighbours, rewiring prob ``rewire-p``.
- ``erdos-renyi``: G(n, ``edge-p``), redrawn until connected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import networkx as nx

from crlsc_fl.registry import Registry

if TYPE_CHECKING:
    from crlsc_fl.scenario.topology_config import TopologyConfig

GRAPHS: Registry[Callable[[int, TopologyConfig, int], nx.Graph]] = Registry("graph")
MAX_TRIES = 200


def _connected(make: Callable[[int], nx.Graph], seed: int, what: str) -> nx.Graph:
    for attempt in range(MAX_TRIES):
        graph = make(seed + attempt)
        if nx.is_connected(graph):
            return graph
    raise ValueError(f"could not draw a connected {what} graph in {MAX_TRIES} tries; raise its density")


def impossible_graph(graph: str, n: int, degree: int) -> str | None:
    """Why ``graph`` cannot be drawn on ``n`` devices with ``degree``, or None."""
    if graph == "k-regular" and (degree >= n or (degree * n) % 2):
        return (f"topology.degree={degree} impossible for a k-regular graph on {n} devices "
                "(need degree < devices and degree*devices even)")
    return None


@GRAPHS.register("ring")
def ring(n: int, topo: TopologyConfig, seed: int) -> nx.Graph:
    return nx.cycle_graph(n) if n > 2 else nx.path_graph(n)


@GRAPHS.register("k-regular")
def k_regular(n: int, topo: TopologyConfig, seed: int) -> nx.Graph:
    reason = impossible_graph("k-regular", n, topo.degree)
    if reason:
        raise ValueError(reason)
    return _connected(lambda s: nx.random_regular_graph(topo.degree, n, seed=s), seed, "k-regular")


@GRAPHS.register("small-world")
def small_world(n: int, topo: TopologyConfig, seed: int) -> nx.Graph:
    return _connected(lambda s: nx.watts_strogatz_graph(n, min(topo.degree, n - 1), topo.rewire_p, seed=s), seed, "small-world")


@GRAPHS.register("erdos-renyi")
def erdos_renyi(n: int, topo: TopologyConfig, seed: int) -> nx.Graph:
    return _connected(lambda s: nx.gnp_random_graph(n, topo.edge_p, seed=s), seed, "Erdos-Renyi")


def peer_graph(n: int, topo: TopologyConfig, seed: int) -> nx.Graph:
    """The scenario's peer graph over devices 0..n-1."""
    return GRAPHS.get(topo.graph)(n, topo, seed)


def neighbours(graph: nx.Graph) -> dict[int, list[int]]:
    return {node: sorted(graph.neighbors(node)) for node in sorted(graph.nodes)}
