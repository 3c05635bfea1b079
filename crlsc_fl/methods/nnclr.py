"""``nnclr``: nearest-neighbour contrastive learning (Dwibedi et al., 2021).

Each view's embedding is replaced by its nearest neighbour in a FIFO support queue of the
device's own past embeddings, then contrasted with the other view. The loss is DCL (eq. 3),
like ``dcl`` and ``crlsc``, so the methods differ only in where the first view comes from;
NNCLR's prediction head is left out for the same reason. Until the queue holds a full batch,
the view's own embedding is used.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from crlsc_fl.kb.knowledge_base import KnowledgeBase
from crlsc_fl.methods.base import Stage1Method, TrainConfig
from crlsc_fl.methods.registry import METHODS
from crlsc_fl.models.encoders import LocalEncoder


@METHODS.register("nnclr")
class NNCLRMethod(Stage1Method):
    name = "nnclr"

    def __init__(
        self, encoder: LocalEncoder, config: TrainConfig | None = None, kb: KnowledgeBase | None = None, queue_size: int = 4096,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(encoder, config, kb, device)
        if queue_size < 1:
            raise ValueError(f"queue_size={queue_size} must be >= 1")
        self.queue_size = queue_size
        self.queue = torch.empty(0, encoder.dim, device=self.device)

    def nearest_neighbour(self, z: torch.Tensor) -> torch.Tensor:
        if len(self.queue) < len(z):
            return z
        unit = F.normalize(z.detach(), dim=1)
        return self.queue[(unit @ self.queue.T).argmax(dim=1)]

    def training_loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        z1, z2 = self.embed((view1,), (view2,))
        loss = 0.5 * (self.loss_fn(self.nearest_neighbour(z1), z2) + self.loss_fn(self.nearest_neighbour(z2), z1))
        self.queue = torch.cat([F.normalize(z1.detach(), dim=1), self.queue])[: self.queue_size]
        return loss

    def extra_state(self) -> dict[str, Any]:
        return {"queue": self.queue.cpu()}  # stored state is device-free

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "queue" in state:
            self.queue = state["queue"].to(self.device)
