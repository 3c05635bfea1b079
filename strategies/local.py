"""``local``: every device trains alone with plain DCL; no knowledge base, nothing sent."""

from __future__ import annotations

from crlsc_fl.bookkeeping.knowledge_delivery import DevicePlan
from crlsc_fl.methods import PLAIN_METHOD
from strategies.base import KnowledgeTransferStrategy
from strategies.registry import STRATEGIES


@STRATEGIES.register("local")
class LocalStrategy(KnowledgeTransferStrategy):
    name = "local"

    def plan_round(self, server_round: int) -> dict[int, DevicePlan]:
        return {spec.device: DevicePlan(PLAIN_METHOD) for spec in self.ctx.devices}
