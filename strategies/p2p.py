"""``p2p`` (device-to-device): devices guide each other with their PKBs over a peer graph.

Round 1 warms up (plain DCL, or with the SKB if ``topology.p2p-warmup = "skb"``; when
``train.kb-method`` uses anchors, every device also aligns to the server's anchors, so that
all PKBs live in one space); every device returns its PKB. From round 2 on, each
device trains with its neighbours' latest PKBs and returns a new PKB: the paper's PKBs for
retrieval, or with ``topology.peer-knowledge = "anchor-pkb"`` their anchor-keyed PKBs,
which replace the mentor's keys as the device's alignment targets (see
:meth:`strategies.plans.DevicePlans.peers`). Flower is a star, so the server relays; every
relayed PKB is counted on the device-to-device link it stands for.
"""

from __future__ import annotations

from crlsc_fl.bookkeeping.knowledge_delivery import DevicePlan
from crlsc_fl.scenario.graphs import neighbours, peer_graph
from strategies.base import KnowledgeTransferStrategy
from strategies.registry import STRATEGIES


@STRATEGIES.register("p2p")
class P2PStrategy(KnowledgeTransferStrategy):
    name = "p2p"

    def setup(self) -> None:
        cfg = self.ctx.cfg
        self.graph = peer_graph(len(self.ctx.devices), cfg.topology, cfg.scenario.seed)
        self.peers = neighbours(self.graph)

    def plan_round(self, server_round: int) -> dict[int, DevicePlan]:
        plans = {}
        for spec in self.ctx.devices:
            d = spec.device
            if server_round == 1:
                warm_with_skb = self.ctx.cfg.topology.p2p_warmup == "skb"
                plans[d] = self.plans.mentor(d, return_pkb=True) if warm_with_skb else self.plans.local(d, return_pkb=True)
            else:
                plans[d] = self.plans.peers(d, self.peers[d], self.absent, return_pkb=True)
        return plans
