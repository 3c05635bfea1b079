"""What the ServerApp hands every strategy: the run's config, devices, nodes and the mentor.

Its own module, below :mod:`strategies.base` and :mod:`strategies.plans`, which both read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from crlsc_fl.outputs.run_dir import RunDirectory
from crlsc_fl.scenario.config import ScenarioConfig
from crlsc_fl.scenario.devices import DeviceSpec


@dataclass(frozen=True)
class MentorPayloads:
    """The server's knowledge as it goes on the wire: the SKB and, when the devices are
    grounded, the anchor set, each as (key, bytes)."""

    skb: tuple[str, bytes]
    anchors: tuple[str, bytes] | None = None


@dataclass
class FederationContext:
    """What the ServerApp hands every strategy."""

    cfg: ScenarioConfig
    devices: list[DeviceSpec]
    node_ids: dict[int, int]  # device -> Flower node id
    dim: int
    run_dir: RunDirectory
    mentor: Callable[[], MentorPayloads]  # builds (once) and returns the server's SKB and anchors
    run_key: str = ""  # names the devices' state directories: the first run's id, also when resumed
