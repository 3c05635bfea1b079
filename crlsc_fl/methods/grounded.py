"""``crlsc-grounded``: CRLSC whose device space is grounded in the mentor's (beyond the paper).

Paper-literal CRLSC (``crlsc``) retrieves SKB vectors with the device's query q, but nothing
relates the device's embedding space to the mentor's, so retrieval is close to random and
a KB of random vectors guides as well as the SKB (README, stage 1). This method adds the
missing link and keeps the paper's loop:

1. **Grounding**: each step also embeds a batch of augmented public anchor images (sent by
   the server with the SKB, :mod:`crlsc_fl.kb.anchors`) and pulls each onto its anchor key,
   the mentor's vector of that image (:class:`AnchorAlignmentLoss`, weight ``align_weight``).
2. **Retrieval and fusion** (eq. 1-2) on the device's private images, as in ``crlsc``: the
   grounded q (plus noise) retrieves the mentor's top-n neighbours, cross-attention fuses
   them, and DCL (eq. 3) contrasts q* with the other view's p. The fusion options are the
   same :class:`FusionConfig`; :func:`grounded_fusion` gives the ones this method was
   measured with (unit query, noise scaled to it, sharp attention).

Without a KB (``kb=None``) only the grounding term is added to DCL(q, p): a device that
has the anchors but no KB yet (the ``p2p`` warm-up round) still learns in the shared space.

The KB may be an SKB or peers' PKBs (device-to-device): grounded devices of any
architecture embed into the same space, so a peer's PKB is meaningful to them.

3. **Peers' anchor-keyed PKBs** (``peer_anchors``, device-to-device): each peer's own
   embeddings of the same anchor images (:func:`crlsc_fl.kb.builders.build_anchor_pkb`).
   The device aligns its anchor embeddings to each peer's keys with the same loss: it
   learns how a peer that trained on other private images sees the public images. With
   ``mentor_keys=True`` the peers' term (averaged over peers, weight ``peer_weight``) is
   added to the mentor's; with ``mentor_keys=False`` the anchor set gives only the images
   and the peers' keys are the device's whole grounding (weight ``align_weight``, averaged
   over peers). Measured in ``benchmarks/stage1_d2d.py``: the second form, not retrieval
   from a peer's PKB, carries a peer's knowledge (README, device to device).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, get_args

import torch
from pydantic import Field

from crlsc_fl.eval.features import images_to_tensor
from crlsc_fl.kb.anchors import AnchorSet
from crlsc_fl.kb.knowledge_base import KnowledgeBase
from crlsc_fl.loss.anchor_alignment_loss import AnchorAlignmentLoss
from crlsc_fl.methods.base import TrainConfig
from crlsc_fl.methods.crlsc import CRLSCMethod
from crlsc_fl.methods.needs import MethodInputs, Need
from crlsc_fl.methods.registry import METHODS
from crlsc_fl.models.encoders import LocalEncoder
from crlsc_fl.models.modules.kb_fusion import FusionConfig
from crlsc_fl.validation import component


def grounded_fusion(dim: int) -> FusionConfig:
    """The fusion settings measured for ``crlsc-grounded``: unit query, the paper's noise
    variance 0.2 spread over the dimensions (noise norm ~0.45 for a unit query), attention
    at temperature 0.1 over the top 10, and q* = score v as in eq. 2 (``replace``; the
    ``residual`` form measured the same within a seed's spread)."""
    return FusionConfig(
        top_n=10, noise_variance=0.2 / dim, weights="softmax", scale="temperature", attention_temperature=0.1,
        query="normalized", mode="replace",
    )


AnchorTargets = Literal["soft", "onehot"]
ANCHOR_TARGETS: tuple[str, ...] = get_args(AnchorTargets)
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


@component
class GroundingConfig:
    """The anchor-alignment term (the scenario's ``[grounding]`` table). Defaults: the best
    of the single-seed exploration (README, stage 1): soft targets added ~3 kNN points over
    one-hot, weight 3 ~2 more over weight 1."""

    anchor_batch: Annotated[int, Field(ge=1, description="anchors per step of the alignment term")] = 128
    align_weight: Annotated[NonNegative, Field(description="weight of the alignment term next to the contrastive loss")] = 3.0
    align_temperature: Annotated[Positive, Field(description="temperature of the device's similarities to the anchor keys")] = 0.1
    targets: Annotated[
        AnchorTargets, Field(description="alignment targets: `soft` (the mentor's similarities over the keys at "
                                         "`target-temperature`) or `onehot` (each anchor's own key)")
    ] = "soft"
    target_temperature: Annotated[Positive, Field(description="temperature of the mentor's `soft` target similarities")] = 0.05
    peer_weight: Annotated[
        NonNegative, Field(description="weight of each peer's anchor-keyed PKB term relative to the mentor's "
                                       "(benchmarks/stage1_d2d.py's `peer-anchors`)")
    ] = 1.0


@METHODS.register("crlsc-grounded")
class GroundedCRLSCMethod(CRLSCMethod):
    name = "crlsc-grounded"
    needs = frozenset({Need.ANCHORS, Need.FUSION})
    optional = frozenset({Need.KB, Need.PEER_KEYS})  # no KB: the warm-up round; peers' keys: anchor-pkb
    settings_table = "grounding"

    def __init__(
        self,
        encoder: LocalEncoder,
        config: TrainConfig | None = None,
        kb: KnowledgeBase | None = None,
        fusion: FusionConfig | None = None,
        anchors: AnchorSet | None = None,
        grounding: GroundingConfig | None = None,
        peer_anchors: Sequence[AnchorSet] = (),
        mentor_keys: bool = True,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(encoder, config, kb, fusion or grounded_fusion(encoder.dim), device)
        if kb is None:  # the base class sets no KB (and so no fusion) when none is given
            self.set_knowledge_base(None)
        self.grounding = grounding or GroundingConfig()
        g = self.grounding
        self.align_loss = AnchorAlignmentLoss(g.align_temperature, g.target_temperature if g.targets == "soft" else None)
        self.anchors: AnchorSet | None = None
        self._peer_targets: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.set_anchors(anchors, peer_anchors, mentor_keys)

    @classmethod
    def options(cls, inputs: MethodInputs, settings: object) -> dict[str, Any]:
        """Peers' anchor keys, when given, are the device's whole grounding (``mentor_keys=False``:
        the form that carries a peer's knowledge, module docstring)."""
        if settings is not None and not isinstance(settings, GroundingConfig):
            raise TypeError(f"method {cls.name!r} takes its settings from [{cls.settings_table}] (GroundingConfig), "
                            f"got {type(settings).__name__}")
        return {"kb": inputs.kb, "fusion": inputs.fusion, "anchors": inputs.anchors, "grounding": settings,
                "peer_anchors": inputs.peer_keys, "mentor_keys": not inputs.peer_keys}

    def set_knowledge_base(self, kb: KnowledgeBase | None) -> None:
        if kb is None:
            self.kb, self.fusion = None, None
            return
        super().set_knowledge_base(kb)

    def set_anchors(self, anchors: AnchorSet | None, peer_anchors: Sequence[AnchorSet] = (), mentor_keys: bool = True) -> None:
        """Swap the anchor set (``None``: no grounding term, plain KB-guided training), the
        peers' anchor-keyed PKBs (same images, in the same order) and whether the anchor
        set's own keys are targets too."""
        self.anchors = anchors
        self._peer_targets = []
        self.mentor_keys = mentor_keys
        if anchors is None:
            if peer_anchors:
                raise ValueError("peer anchor-keyed PKBs need the anchor set they are keyed by")
            return
        if not mentor_keys and not peer_anchors:
            raise ValueError("mentor_keys=False leaves the anchors without targets: give peer_anchors")
        anchors.check_dim(self.encoder.dim)
        self._anchor_pixels = anchors.images
        self._anchor_keys, self._anchor_targets = self._targets(anchors)
        for peer in peer_anchors:
            peer.check_dim(self.encoder.dim, what=f"{peer.source}: device")
            if peer.images.shape != anchors.images.shape:
                raise ValueError(f"{peer.source} is keyed by {len(peer)} anchors, the device holds {len(anchors)}")
            self._peer_targets.append(self._targets(peer))

    def _targets(self, anchors: AnchorSet) -> tuple[torch.Tensor, torch.Tensor]:
        """(unique keys, each anchor's key index), on the method's device (the pixels stay
        on the CPU: each step sends only its picked anchors)."""
        unique, index = anchors.targets()
        return torch.from_numpy(unique).to(self.device), torch.from_numpy(index).to(self.device)

    def first_view(self, q: torch.Tensor) -> torch.Tensor:
        """q* from the KB (eq. 1-2), or q itself while the device holds no KB."""
        return q if self.fusion is None else self.fusion(q, self.generator)

    def training_loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        if self.anchors is None or self.grounding.align_weight == 0:
            q, p = self.embed((view1,), (view2,))
            return self.loss_fn(self.first_view(q), p)
        picked = torch.randint(len(self._anchor_pixels), (self.grounding.anchor_batch,), generator=self.generator)
        anchor_view = self.augment(images_to_tensor(self._anchor_pixels[picked.numpy()], self.device), self.generator)
        picked = picked.to(self.device)
        # Queries and anchors share a forward pass (one BatchNorm batch, less overhead than two);
        # with one_pass the other view joins them.
        q, anchor_z, p = self.embed((view1, anchor_view), (view2,))
        contrastive = self.loss_fn(self.first_view(q), p)
        peers = [self.align_loss(anchor_z, keys, index[picked]) for keys, index in self._peer_targets]
        if not self.mentor_keys:
            align = torch.stack(peers).mean()
        else:
            align = self.align_loss(anchor_z, self._anchor_keys, self._anchor_targets[picked])
            if peers:
                align = align + self.grounding.peer_weight * torch.stack(peers).mean()
        return contrastive + self.grounding.align_weight * align
