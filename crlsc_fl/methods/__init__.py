"""Stage-1 methods by name: ``crlsc``, ``crlsc-grounded``, ``dcl``, ``nnclr``, ``simclr``.

Each method class declares what it needs (:mod:`crlsc_fl.methods.needs`); code outside this
package asks the class (``METHODS.get(name).needs``, :func:`methods_using`) instead of
naming methods.
"""

from __future__ import annotations

from typing import Any

from crlsc_fl.kb.knowledge_base import KnowledgeBase
from crlsc_fl.methods import crlsc, dcl, grounded, nnclr, simclr  # noqa: F401  (registers the methods)
from crlsc_fl.methods.base import FitResult, Stage1Method, TrainConfig
from crlsc_fl.methods.needs import PAPER_METHOD, PLAIN_METHOD, MethodInputs, Need, describe
from crlsc_fl.methods.registry import METHODS
from crlsc_fl.models.encoders import LocalEncoder


def build_method(
    name: str, encoder: LocalEncoder, config: TrainConfig | None = None, kb: KnowledgeBase | None = None, **options: Any
) -> Stage1Method:
    """Build a registered method with its constructor's arguments (experiments and tests; a
    federated device uses :meth:`Stage1Method.build`); unknown names list the valid ones."""
    return METHODS.get(name)(encoder, config, kb, **options)


def methods_using(need: Need) -> list[str]:
    """The registered methods that train with ``need`` when they are given it, sorted."""
    return [name for name in METHODS if need in METHODS.get(name).uses()]


__all__ = [
    "METHODS", "PAPER_METHOD", "PLAIN_METHOD", "FitResult", "MethodInputs", "Need", "Stage1Method", "TrainConfig", "build_method", "describe",
    "methods_using",
]
