"""``cloud-edge`` (mentor-to-device): the server's SKB guides every device.

The server builds the SKB once (cached on disk); it travels cloud -> edge node -> device,
counted once per link: each edge receives it once, each device once (devices keep it).
"""

from __future__ import annotations

from crlsc_fl.bookkeeping.knowledge_delivery import DevicePlan
from strategies.base import KnowledgeTransferStrategy
from strategies.registry import STRATEGIES


@STRATEGIES.register("cloud-edge")
class CloudEdgeStrategy(KnowledgeTransferStrategy):
    name = "cloud-edge"

    def plan_round(self, server_round: int) -> dict[int, DevicePlan]:
        return {spec.device: self.plans.mentor(spec.device) for spec in self.ctx.devices}
