"""``crlsc``: KB-guided contrastive learning (paper sec. 3.1, Fig. 3).

The query branch's embedding q retrieves top-n KB vectors around a noisy copy of itself;
cross-attention fuses them into q* (eq. 1-2); DCL (eq. 3) contrasts q* with the other
branch's embedding p. The KB is an SKB (mentor-to-device) or peers' PKBs (device-to-device).
"""

from __future__ import annotations

from typing import Any

import torch

from crlsc_fl.kb.knowledge_base import KnowledgeBase
from crlsc_fl.methods.base import Stage1Method, TrainConfig
from crlsc_fl.methods.needs import MethodInputs, Need
from crlsc_fl.methods.registry import METHODS
from crlsc_fl.models.encoders import LocalEncoder
from crlsc_fl.models.modules.kb_fusion import FusionConfig, KnowledgeFusion


@METHODS.register("crlsc")
class CRLSCMethod(Stage1Method):
    name = "crlsc"
    needs = frozenset({Need.KB, Need.FUSION})

    def __init__(
        self,
        encoder: LocalEncoder,
        config: TrainConfig | None = None,
        kb: KnowledgeBase | None = None,
        fusion: FusionConfig | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.fusion_config = fusion or FusionConfig()
        super().__init__(encoder, config, kb, device)

    @classmethod
    def options(cls, inputs: MethodInputs, settings: object) -> dict[str, Any]:
        return {"kb": inputs.kb, "fusion": inputs.fusion}

    def set_knowledge_base(self, kb: KnowledgeBase | None) -> None:
        super().set_knowledge_base(kb)
        assert self.kb is not None
        self.fusion: KnowledgeFusion | None = KnowledgeFusion(self.kb, self.fusion_config)

    def training_loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        q, p = self.embed((view1,), (view2,))
        assert self.fusion is not None  # set with the KB this method needs
        q_star = self.fusion(q, self.generator)
        return self.loss_fn(q_star, p)
