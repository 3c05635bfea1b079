"""Knowledge-base fusion: noisy retrieval of top-n KB vectors and cross-attention (eq. 1-2).

Paper sec. 3.1: Gaussian noise N(mu, sigma^2) is added to the query branch's output q to
broaden retrieval; the top-n KB vectors k = v (B, n, d) are fused by

    score = q k^T / sqrt(d)          (eq. 1)
    q*    = score v                  (eq. 2)

Choices the paper leaves open, as documented options of :class:`FusionConfig`:

- ``weights``: ``softmax`` normalises the n scores (standard attention; default) or
  ``raw`` uses eq. 1 unnormalised.
- ``scale``: ``sqrt-d`` (eq. 1) or ``temperature`` (divide by ``attention_temperature``,
  which gives sharper weights than sqrt(d) for unit vectors).
- ``query``: ``raw`` uses the encoder output as it is (paper) or ``normalized`` L2-normalises
  q first, for retrieval and attention alike.
- ``noise_in_attention``: the noisy q is used for retrieval only (default) or also in eq. 1.
- ``noise_variance``: the paper's sigma^2 = 0.2 per dimension (mean 0).
- ``mode``: ``replace`` builds q* from KB vectors only (eq. 2, the paper); ``residual``
  keeps the image in it, q* = q + ``residual_weight`` * (score v) (beyond the paper: with
  ``replace`` DCL contrasts p with a view that carries little of the image, see README).

Retrieval is non-differentiable (a FAISS search); gradients reach the encoder through q in
the attention score.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from crlsc_fl.validation import component

FusionWeights = Literal["softmax", "raw"]
FusionScale = Literal["sqrt-d", "temperature"]
FusionQuery = Literal["raw", "normalized"]
FusionMode = Literal["replace", "residual"]
NonNegative = Annotated[float, Field(ge=0)]


class SearchableKnowledge(Protocol):
    """What the fusion needs of a knowledge base: a top-n search that returns the
    reconstructed vectors (a :class:`crlsc_fl.kb.knowledge_base.KnowledgeBase`, or several
    searched as one, :class:`crlsc_fl.kb.union.KnowledgeBaseUnion`). A protocol, so that the
    models do not import the knowledge bases built on top of them."""

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scores, ids, vectors) of the ``n`` nearest entries per query; vectors (B, n, d)."""
        ...


@component
class FusionConfig:
    """The options of eq. 1-2 (the scenario's ``[fusion]`` table; see the module docstring)."""

    top_n: Annotated[int, Field(ge=1, description="KB vectors retrieved per query (n)")] = 30
    noise_variance: Annotated[NonNegative, Field(description="variance of the Gaussian noise added to q for retrieval (the paper: 0.2)")] = 0.2
    weights: Annotated[FusionWeights, Field(description="attention weights: `softmax` over the n scores or `raw` (eq. 1 unnormalised)")] = "softmax"
    scale: Annotated[FusionScale, Field(description="score divisor: `sqrt-d` (eq. 1) or `temperature` (`attention-temperature`)")] = "sqrt-d"
    attention_temperature: Annotated[float, Field(gt=0, description="divisor of the scores when `scale = \"temperature\"`")] = 0.1
    query: Annotated[FusionQuery, Field(description="q as the encoder gives it (`raw`, the paper) or L2-normalised first (`normalized`)")] = "raw"
    noise_in_attention: Annotated[bool, Field(description="use the noisy q in eq. 1 too (default: for retrieval only)")] = False
    mode: Annotated[FusionMode, Field(description="q* = score v (`replace`, eq. 2) or q + residual-weight * score v (`residual`)")] = "replace"
    residual_weight: Annotated[NonNegative, Field(description="weight of score v in the `residual` mode")] = 1.0


class KnowledgeFusion(nn.Module):
    """q -> q*: retrieve top-n KB vectors around a noisy q and attend over them."""

    def __init__(self, kb: SearchableKnowledge, config: FusionConfig | None = None) -> None:
        super().__init__()
        self.kb = kb
        self.config = config or FusionConfig()

    def retrieve(self, query: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Noisy query (B, d) and the reconstructed top-n KB vectors (B, n, d), no gradient."""
        noise = torch.randn(query.shape, generator=generator) * math.sqrt(self.config.noise_variance)
        noisy = query.detach() + noise.to(query.device)
        _, _, values = self.kb.search(noisy.cpu().numpy(), self.config.top_n)
        return noisy, torch.from_numpy(values).to(query.device)

    def attend(self, query: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Eq. 1-2: q* = weights(q v^T / scale) v for q (B, d), v (B, n, d)."""
        c = self.config
        divisor = math.sqrt(query.shape[-1]) if c.scale == "sqrt-d" else c.attention_temperature
        score = torch.einsum("bd,bnd->bn", query, values) / divisor
        if c.weights == "softmax":
            score = score.softmax(dim=-1)
        return torch.einsum("bn,bnd->bd", score, values)

    def forward(self, query: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.config.query == "normalized":
            query = F.normalize(query, dim=-1)
        noisy, values = self.retrieve(query, generator)
        clean = query
        if self.config.noise_in_attention:
            query = query + (noisy - query.detach())  # noisy value, gradient of the clean q
        fused = self.attend(query, values)
        return clean + self.config.residual_weight * fused if self.config.mode == "residual" else fused
