"""NTXentLoss (SimCLR's InfoNCE) against a loop-by-loop transcription."""

from __future__ import annotations

import math

import pytest
import torch

from crlsc_fl.loss.dcl_loss import DCLLoss
from crlsc_fl.loss.ntxent_loss import NTXentLoss


def ntxent_reference(out0: torch.Tensor, out1: torch.Tensor, tau: float) -> float:
    """-log exp(<z,z+>/tau) / (exp(<z,z+>/tau) + sum over the 2B-2 negatives), mean over all 2B anchors."""
    z = [v.double() / v.double().norm() for v in torch.cat([out0, out1])]
    batch = len(out0)
    total = 0.0
    for i in range(2 * batch):
        positive = (i + batch) % (2 * batch)
        denominator = sum(math.exp(float(z[i] @ z[j]) / tau) for j in range(2 * batch) if j != i)
        total += -(float(z[i] @ z[positive]) / tau - math.log(denominator))
    return total / (2 * batch)


@pytest.mark.parametrize("batch", [2, 7])
@pytest.mark.parametrize("dim", [4, 24])
@pytest.mark.parametrize("tau", [0.1, 0.7])
def test_matches_transcription(batch: int, dim: int, tau: float) -> None:
    g = torch.Generator().manual_seed(batch + dim)
    out0, out1 = torch.randn(batch, dim, generator=g), torch.randn(batch, dim, generator=g)
    assert NTXentLoss(tau)(out0, out1).item() == pytest.approx(ntxent_reference(out0, out1, tau), rel=1e-4, abs=1e-4)


def test_ntxent_exceeds_dcl() -> None:
    """The positive in the denominator makes InfoNCE = DCL + log(1 + exp(pos)/sum(neg)) > DCL."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    assert NTXentLoss(0.1)(a, b).item() > DCLLoss(0.1)(a, b).item()


@pytest.mark.parametrize("tau", [0.0, -1.0])
def test_invalid_temperature(tau: float) -> None:
    with pytest.raises(ValueError, match="temperature must be > 0"):
        NTXentLoss(tau)
