"""Peer graphs for device-to-device transfer (seeded, undirected, connected).

- ``ring``: each device talks to its two neighbours (degree 2).
- ``k-regular``: a random k-regular graph (every degree = ``topology.degree``).
- ``small-world``: Watts-Strogatz, ``degree`` nearest neighbours, rewiring prob ``rewire-p``.
- ``erdos-renyi``: G(n, ``edge-p``), redrawn until connected.

They sit below the ``[topology]`` table that names them (:mod:`crlsc_fl.scenario.topology_config`
validates ``topology.graph`` against :data:`GRAPHS`), so a graph takes what it reads of that
table as a :class:`GraphSettings`; the ``p2p`` strategy draws its graph with :func:`peer_graph`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import networkx as nx

from crlsc_fl.registry import Registry


class GraphSettings(Protocol):
    """What the graphs read of the ``[topology]`` table (:class:`~crlsc_fl.scenario.topology_config.TopologyConfig`)."""

    @property
    def graph(self) -> str: ...
    @property
    def degree(self) -> int: ...
    @property
    def rewire_p(self) -> float: ...
    @property
    def edge_p(self) -> float: ...


GRAPHS: Registry[Callable[[int, GraphSettings, int], nx.Graph]] = Registry("graph")
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
def ring(n: int, topo: GraphSettings, seed: int) -> nx.Graph:
    return nx.cycle_graph(n) if n > 2 else nx.path_graph(n)


@GRAPHS.register("k-regular")
def k_regular(n: int, topo: GraphSettings, seed: int) -> nx.Graph:
    reason = impossible_graph("k-regular", n, topo.degree)
    if reason:
        raise ValueError(reason)
    return _connected(lambda s: nx.random_regular_graph(topo.degree, n, seed=s), seed, "k-regular")


@GRAPHS.register("small-world")
def small_world(n: int, topo: GraphSettings, seed: int) -> nx.Graph:
    return _connected(lambda s: nx.watts_strogatz_graph(n, min(topo.degree, n - 1), topo.rewire_p, seed=s), seed, "small-world")


@GRAPHS.register("erdos-renyi")
def erdos_renyi(n: int, topo: GraphSettings, seed: int) -> nx.Graph:
    return _connected(lambda s: nx.gnp_random_graph(n, topo.edge_p, seed=s), seed, "Erdos-Renyi")


def peer_graph(n: int, topo: GraphSettings, seed: int) -> nx.Graph:
    """The scenario's peer graph over devices 0..n-1."""
    return GRAPHS.get(topo.graph)(n, topo, seed)


def neighbours(graph: nx.Graph) -> dict[int, list[int]]:
    return {node: sorted(graph.neighbors(node)) for node in sorted(graph.nodes)}
