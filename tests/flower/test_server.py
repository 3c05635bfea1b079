"""The ServerApp's start: waiting for the federation's nodes, and failing fast with the remedy."""

from __future__ import annotations

import re
import time

import pytest

from crlsc_fl.flower.server import MissingNodesError, wait_for_nodes


class JoiningGrid:
    """Nodes that join one per poll up to ``final`` (a deployment starting its SuperNodes)."""

    def __init__(self, final: int, start: int = 0) -> None:
        self.final, self.count = final, start

    def get_node_ids(self) -> list[int]:
        self.count = min(self.final, self.count + 1)
        return list(range(100, 100 + self.count))


def test_wait_returns_once_every_node_joined() -> None:
    assert wait_for_nodes(JoiningGrid(5), 5, stall=1.0, poll=0.01) == [100, 101, 102, 103, 104]  # type: ignore[arg-type]


@pytest.mark.parametrize(("connected", "count"), [(2, 5), (0, 3)])
def test_a_federation_that_stops_growing_fails_fast_with_the_remedy(connected: int, count: int) -> None:
    """Plain `flwr run` gives the simulation 2 SuperNodes: the ServerApp must say so within
    seconds (the stall window), not after the 300 s timeout."""
    start = time.monotonic()
    with pytest.raises(MissingNodesError) as err:
        wait_for_nodes(JoiningGrid(connected, start=connected), count, timeout=300.0, stall=0.3, poll=0.01)  # type: ignore[arg-type]
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert f"only {connected} of devices.num-devices={count} nodes connected" in message
    assert f'--federation-config "num-supernodes={count}' in message and "crlsc-fl run" in message
    assert re.search(rf"partition-id=<0..{count - 1}> num-partitions={count}", message)


def test_the_timeout_still_bounds_a_slowly_growing_federation() -> None:
    with pytest.raises(MissingNodesError, match="only"):
        wait_for_nodes(JoiningGrid(1000), 1000, timeout=0.2, stall=10.0, poll=0.01)  # type: ignore[arg-type]
