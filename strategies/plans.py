"""The plans topologies are built from: train alone, learn from the mentor (SKB), learn from peers.

A plan says which method a device trains with and which payloads reach it by which hops
(:class:`crlsc_fl.bookkeeping.knowledge_delivery.DevicePlan`). What is sent follows what
``train.kb-method`` declares it needs (:mod:`crlsc_fl.methods.needs`): the anchor set only
to a method that uses anchors, and before a device holds a KB it trains with its KB method
only if the KB is optional for it (with :data:`~crlsc_fl.methods.PLAIN_METHOD` otherwise).
Devices are split over ``topology.edges`` edge nodes in contiguous blocks; server payloads
travel cloud -> edge -> device, PKBs device -> device (the server relays them: Flower is a star).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from crlsc_fl.bookkeeping.knowledge_delivery import DevicePlan, Hop, KnowledgeDelivery, device_node
from crlsc_fl.methods import METHODS, PLAIN_METHOD, Need
from strategies.context import FederationContext


class DevicePlans:
    def __init__(self, ctx: FederationContext, delivery: KnowledgeDelivery) -> None:
        self.ctx, self.delivery = ctx, delivery
        self.kb_method = METHODS.get(ctx.cfg.train.kb_method)  # the method of devices that are sent knowledge

    def edge_of(self, device: int) -> int:
        """Devices are split over edge nodes in contiguous blocks."""
        per_edge = -(-len(self.ctx.devices) // self.ctx.cfg.topology.edges)
        return device // per_edge

    def cloud_route(self, device: int) -> list[Hop]:
        edge = f"edge-{self.edge_of(device)}"
        return [("cloud", edge, "cloud-edge"), (edge, device_node(device), "edge-device")]

    def anchor_route(self, device: int) -> tuple[str | None, dict[str, list[Hop]]]:
        """The anchor set's key and its route (cloud -> edge -> device) when the KB method
        uses anchors (it grounds the devices); nothing otherwise."""
        anchors = self.ctx.mentor().anchors if Need.ANCHORS in self.kb_method.uses() else None
        if anchors is None:
            return None, {}
        key = self.delivery.offer(*anchors)
        return key, {key: self.cloud_route(device)}

    def local(self, device: int, **kwargs: Any) -> DevicePlan:
        """No KB to learn from: the plain method when the KB method needs a KB, else the KB
        method without one (grounded devices: DCL plus anchor alignment, so that their PKBs
        live in the shared space from the first round)."""
        if Need.KB in self.kb_method.needs:
            return DevicePlan(PLAIN_METHOD, **kwargs)
        anchor, routes = self.anchor_route(device)
        return DevicePlan(self.kb_method.name, (), routes, anchor_key=anchor, **kwargs)

    def mentor(self, device: int, **kwargs: Any) -> DevicePlan:
        """Mentor-to-device: train with the SKB (and the anchors), delivered cloud -> edge -> device."""
        key = self.delivery.offer(*self.ctx.mentor().skb)
        anchor, routes = self.anchor_route(device)
        return DevicePlan(self.kb_method.name, (key,), {key: self.cloud_route(device), **routes}, anchor_key=anchor, **kwargs)

    def peers(self, device: int, peers: Iterable[int], absent: Mapping[int, str], **kwargs: Any) -> DevicePlan:
        """Device-to-device: train with the peers' latest PKBs (:meth:`local` if none yet).
        A peer ``absent`` this round sends nothing: the device uses the newest PKB of it that
        it holds. Grounded devices also get the anchors from the cloud (once). With
        ``topology.peer-knowledge`` ``anchor-pkb`` (or its random control) the PKBs are
        anchor-keyed and become the device's alignment targets, not a KB to retrieve from."""
        keys, routes = [], {}
        latest = self.delivery.pkbs
        for p in peers:
            if p not in absent and p in latest:
                keys.append(latest[p])
                routes[latest[p]] = [(device_node(p), device_node(device), "d2d")]
            elif (held := self.delivery.held_pkb(device, p)) is not None:
                keys.append(held)
        if not keys:
            return self.local(device, **kwargs)
        anchor, anchor_routes = self.anchor_route(device)
        kb_keys, peer_anchor_keys = ((), tuple(keys)) if self.ctx.cfg.topology.peer_knowledge != "pkb" else (tuple(keys), ())
        return DevicePlan(self.kb_method.name, kb_keys, {**routes, **anchor_routes}, anchor_key=anchor,
                          peer_anchor_keys=peer_anchor_keys, **kwargs)
