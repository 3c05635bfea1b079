"""Stage-1 methods by name: ``crlsc``, ``dcl``, ``nnclr``, ``simclr``."""

from __future__ import annotations

from typing import Any

from crlsc_fl.kb.knowledge_base import KnowledgeBase
from crlsc_fl.methods import crlsc, dcl, grounded, nnclr, simclr  # noqa: F401  (registers the methods)
from crlsc_fl.methods.base import FitResult, Stage1Method, TrainConfig
from crlsc_fl.methods.registry import METHODS
from crlsc_fl.models.encoders import LocalEncoder


def build_method(
    name: str, encoder: LocalEncoder, config: TrainConfig | None = None, kb: KnowledgeBase | None = None, **options: Any
) -> Stage1Method:
    """Build a registered method; unknown names list the valid ones."""
    return METHODS.get(name)(encoder, config, kb, **options)


__all__ = ["METHODS", "FitResult", "Stage1Method", "TrainConfig", "build_method"]
