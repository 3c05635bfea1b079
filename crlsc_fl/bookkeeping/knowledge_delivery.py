"""Server-side bookkeeping of knowledge transfer: who holds which payload, and every hop.

Flower is a star (the server relays every message), so what a device receives is decided
here and every transfer is counted on the link it stands for (:class:`CommLedger`). A
payload (the SKB, the anchor set, a device's PKB or anchor-keyed PKB) is sent to a device
only if it does not hold it yet, and each hop of its route is counted once per receiver:
an edge node that already holds the SKB forwards it without a new ``cloud-edge`` transfer.
A device keeps what it was sent, unless its round failed (then it is sent again). The
latest PKB of every device is kept (older ones are dropped from the server) so that peers
can learn from it (paper, sec. 3.1: device-to-device transfer of PKBs).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from crlsc_fl.bookkeeping.ledger import CommLedger, Transfer
from crlsc_fl.scenario.network import NetworkConfig

if TYPE_CHECKING:
    from flwr.app import ArrayRecord

Hop = tuple[str, str, str]  # (src, dst, tier)


def device_node(device: int) -> str:
    """A device's name on the ledger's links."""
    return f"device-{device}"


@dataclass
class DevicePlan:
    """What one device does in one round and what it receives.

    ``kb_routes[key]`` lists the hops by which payload ``key`` (a KB, the anchor set
    ``anchor_key`` that grounds devices whose method uses anchors, or a peer's anchor-keyed PKB in
    ``peer_anchor_keys``) reaches the device (counted only for hops whose receiver does not
    hold it yet).
    """

    method: str
    kb_keys: tuple[str, ...] = ()
    kb_routes: dict[str, list[Hop]] = field(default_factory=dict)
    weights: ArrayRecord | None = None
    return_pkb: bool = False
    return_weights: bool = False
    anchor_key: str | None = None
    peer_anchor_keys: tuple[str, ...] = ()

    def payload_keys(self) -> tuple[str, ...]:
        return self.kb_keys + ((self.anchor_key,) if self.anchor_key else ()) + self.peer_anchor_keys

    def payload_kind(self, key: str) -> str:
        """The ledger's name for payload ``key``."""
        return "anchors" if key == self.anchor_key else "anchor-pkb" if key in self.peer_anchor_keys else "kb"


class KnowledgeDelivery:
    """The payloads of one topology's run (``blobs``), which node holds which
    (``holdings``), each device's latest PKB (``pkbs``) and the ledger."""

    def __init__(self, topology: str, network: NetworkConfig) -> None:
        self.topology = topology
        self.ledger = CommLedger(network)
        self.blobs: dict[str, bytes] = {}
        self.holdings: dict[str, set[str]] = defaultdict(set)  # node name -> payload keys it holds
        self.pkbs: dict[int, str] = {}  # device -> key of its latest PKB

    def offer(self, key: str, blob: bytes) -> str:
        """Make a server payload (SKB, anchors) available for delivery; returns its key."""
        self.blobs.setdefault(key, blob)
        return key

    def deliver(self, server_round: int, device: int, plan: DevicePlan) -> dict[str, bytes]:
        """Record every hop by which the plan's payloads reach ``device`` (once per receiver)
        and return the blobs the device must be sent now (those it does not hold yet)."""
        receiver = device_node(device)
        to_send: dict[str, bytes] = {}
        for key in plan.payload_keys():
            already_held = key in self.holdings[receiver]
            kind = plan.payload_kind(key)
            for src, dst, tier in plan.kb_routes.get(key, []):
                if key not in self.holdings[dst]:
                    self.ledger.record(server_round, kind, src, dst, tier, len(self.blobs[key]))
                    self.holdings[dst].add(key)
            if key not in self.holdings[receiver]:
                raise RuntimeError(f"{self.topology}: no route delivers {kind} {key!r} to device {device}")
            if not already_held:
                to_send[key] = self.blobs[key]
        return to_send

    def record_weights(self, server_round: int, route: list[Hop], nbytes: int, upload: bool = False) -> None:
        """Weights sent along ``route`` (server to device), or back along it when ``upload``:
        they are never held, so every hop counts every time."""
        for src, dst, tier in reversed(route) if upload else route:
            sender, receiver = (dst, src) if upload else (src, dst)
            self.ledger.record(server_round, "weights", sender, receiver, tier, nbytes)

    def forget(self, device: int, keys: Iterable[str]) -> None:
        """A failed device loses what it was sent this round (it is sent, and counted, again)."""
        self.holdings[device_node(device)].difference_update(keys)

    def keep_pkb(self, server_round: int, device: int, blob: bytes) -> str:
        """Store the device's new PKB and drop its previous one; returns the new key."""
        old = self.pkbs.get(device)
        key = f"pkb-{self.topology}-d{device}-r{server_round}"
        self.blobs[key] = blob
        self.pkbs[device] = key
        if old is not None:
            self.blobs.pop(old, None)
        return key

    def held_pkb(self, device: int, peer: int) -> str | None:
        """The newest PKB of ``peer`` that ``device`` holds, if any."""
        prefix = f"pkb-{self.topology}-d{peer}-r"
        held = [k for k in self.holdings[device_node(device)] if k.startswith(prefix)]
        return max(held, key=lambda k: int(k[len(prefix):])) if held else None

    def state_dict(self) -> dict:
        return {
            "transfers": [asdict(t) for t in self.ledger.transfers],
            "holdings": {node: sorted(keys) for node, keys in self.holdings.items()},
            "blobs": dict(self.blobs), "pkbs": dict(self.pkbs),
        }

    def load_state_dict(self, state: dict) -> None:
        self.ledger.transfers = [Transfer(**t) for t in state["transfers"]]
        self.holdings = defaultdict(set, {node: set(keys) for node, keys in state["holdings"].items()})
        self.blobs, self.pkbs = dict(state["blobs"]), dict(state["pkbs"])
