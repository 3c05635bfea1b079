"""Linear evaluation on a frozen encoder (paper sec. 4.2, tables 1-3).

"We add a linear classifier with 3-layers MLP on the frozen local encoder" and report top-1
and top-5 accuracy. The sentence admits two readings, so both are in :data:`PROBES`:
``linear`` (one linear layer, the standard linear evaluation) and ``mlp`` (three linear
layers with batch-norm and ReLU between them). Both train with Adam and cross-entropy on
cached, standardised features (mean / std of the training features), so a probe costs
seconds, not a pass of the encoder per epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from torch import nn

from crlsc_fl.eval.knn import topk_accuracy
from crlsc_fl.eval.linear_probe import fit_classifier, standardize
from crlsc_fl.registry import Registry
from crlsc_fl.validation import component, in_range

ProbeFactory = Callable[[int, int, int], nn.Module]
PROBES: Registry[ProbeFactory] = Registry("probe")


@PROBES.register("linear")
def linear_probe(in_features: int, num_classes: int, hidden: int) -> nn.Module:
    """A single linear layer (``hidden`` unused)."""
    return nn.Linear(in_features, num_classes)


@PROBES.register("mlp")
def mlp_probe(in_features: int, num_classes: int, hidden: int) -> nn.Module:
    """The paper's 3-layer MLP head: Linear-BN-ReLU, Linear-BN-ReLU, Linear."""
    return nn.Sequential(
        nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, num_classes),
    )


PositiveInt = Annotated[int, in_range(1)]


@component
class ProbeConfig:
    """How a probe trains (Adam, cross-entropy, on the standardised features)."""

    epochs: Annotated[PositiveInt, Field(description="passes over the training features")] = 30
    batch_size: Annotated[PositiveInt, Field(description="features per step")] = 256
    lr: Annotated[float, in_range(0, open_low=True), Field(description="Adam learning rate")] = 1e-3
    weight_decay: Annotated[float, in_range(0), Field(description="Adam weight decay")] = 1e-5
    hidden: Annotated[PositiveInt, Field(description="hidden units of the `mlp` probe's layers")] = 512
    seed: Annotated[int, Field(description="seed of the probe's initial weights and batch order")] = 0


@dataclass(frozen=True)
class ProbeResult:
    probe: str
    top1: float  # fraction in [0, 1]
    top5: float  # top-min(5, classes)
    train_top1: float
    num_train: int
    num_test: int


def _check_features(x: np.ndarray, y: np.ndarray, name: str, num_classes: int) -> None:
    if x.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"{name} features must be (N, F) with N = len(labels) > 0, got {x.shape} and {len(y)} labels")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"{name} labels must lie in [0, {num_classes}), got [{y.min()}, {y.max()}]")


def train_probe(
    kind: str,
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    config: ProbeConfig | None = None,
    device: torch.device | str | None = None,
) -> ProbeResult:
    """Train probe ``kind`` ("linear" or "mlp") on frozen features, report top-1 / top-5 on test.
    ``device``: where the probe trains (default: the CPU); it is initialised on the CPU, so
    one seed gives the same starting weights everywhere. ``config``: default ``ProbeConfig()``."""
    config = config or ProbeConfig()
    factory = PROBES.get(kind)
    _check_features(train_x, train_y, "train", num_classes)
    _check_features(test_x, test_y, "test", num_classes)
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train features have {train_x.shape[1]} dims, test features {test_x.shape[1]}")
    xs, xt = standardize(torch.from_numpy(train_x.astype(np.float32)), torch.from_numpy(test_x.astype(np.float32)))
    ys, yt = torch.from_numpy(train_y.astype(np.int64)), torch.from_numpy(test_y.astype(np.int64))
    if device is not None:
        xs, xt, ys, yt = (t.to(device) for t in (xs, xt, ys, yt))
    torch.manual_seed(config.seed)
    model = fit_classifier(
        factory(xs.shape[1], num_classes, config.hidden).to(xs.device), xs, ys, epochs=config.epochs, lr=config.lr,
        batch_size=config.batch_size, weight_decay=config.weight_decay, seed=config.seed,
    )
    with torch.no_grad():
        test_scores, train_scores = topk_accuracy(model(xt), yt), topk_accuracy(model(xs), ys)
    return ProbeResult(
        probe=kind,
        top1=test_scores["top1"] / 100,
        top5=test_scores["top5"] / 100,
        train_top1=train_scores["top1"] / 100,
        num_train=len(xs),
        num_test=len(xt),
    )
