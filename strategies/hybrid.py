"""``hybrid``: large devices are mentored by the SKB, then mentor the small ones.

Devices whose architecture is in ``topology.hybrid-mentors`` train with the SKB every
round (cloud -> edge -> device) and return PKBs. Every other device is assigned
``topology.degree`` mentors (seeded, preferring mentors behind the same edge node) and,
from round 2 on, trains with its mentors' latest PKBs (round 1: plain DCL, no PKB exists
yet). Mentor PKBs (paper PKBs, or anchor-keyed ones with ``topology.peer-knowledge``) are
counted on device-to-device links.
"""

from __future__ import annotations

import numpy as np

from crlsc_fl.bookkeeping.knowledge_delivery import DevicePlan
from strategies.base import KnowledgeTransferStrategy
from strategies.registry import STRATEGIES


@STRATEGIES.register("hybrid")
class HybridStrategy(KnowledgeTransferStrategy):
    name = "hybrid"

    def setup(self) -> None:
        cfg = self.ctx.cfg
        mentor_archs = set(cfg.topology.hybrid_mentors)
        self.mentors = [s.device for s in self.ctx.devices if s.arch in mentor_archs]
        if not self.mentors:
            raise ValueError(
                f"topology.hybrid-mentors={','.join(cfg.topology.hybrid_mentors)!r} matches no device; "
                f"architectures present: {sorted({s.arch for s in self.ctx.devices})}"
            )
        rng = np.random.default_rng(cfg.scenario.seed)
        self.mentors_of: dict[int, list[int]] = {}
        for spec in self.ctx.devices:
            if spec.device in self.mentors:
                continue
            same_edge = [m for m in self.mentors if self.plans.edge_of(m) == self.plans.edge_of(spec.device)]
            pool = same_edge if len(same_edge) >= cfg.topology.degree else self.mentors
            count = min(cfg.topology.degree, len(pool))
            self.mentors_of[spec.device] = sorted(int(m) for m in rng.choice(pool, size=count, replace=False))

    def plan_round(self, server_round: int) -> dict[int, DevicePlan]:
        plans = {}
        for spec in self.ctx.devices:
            d = spec.device
            if d in self.mentors_of:
                plans[d] = self.plans.peers(d, self.mentors_of[d], self.absent)
            else:
                plans[d] = self.plans.mentor(d, return_pkb=True)
        return plans
