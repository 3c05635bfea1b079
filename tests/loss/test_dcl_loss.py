"""DCLLoss against a loop-by-loop transcription of paper eq. 3."""

from __future__ import annotations

import math

import pytest
import torch

from crlsc_fl.loss.dcl_loss import DCLLoss


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


def dcl_reference(out0: torch.Tensor, out1: torch.Tensor, tau: float) -> float:
    """Eq. 3 with plain Python loops, in float64.

    For anchor z_i of one view: -<z_i, z+_i>/tau + log sum_neg exp(<z_i, z_neg>/tau), the
    negatives being every other sample of both views (2B - 2); averaged over anchors and
    symmetrised over the two views.
    """
    views = [[_unit(v.double()) for v in out0], [_unit(v.double()) for v in out1]]
    batch = len(out0)
    sides = []
    for a in (0, 1):
        total = 0.0
        for i in range(batch):
            z, positive = views[a][i], views[1 - a][i]
            negatives = [views[v][j] for v in (0, 1) for j in range(batch) if j != i]
            assert len(negatives) == 2 * batch - 2
            total += -float(z @ positive) / tau + math.log(sum(math.exp(float(z @ n) / tau) for n in negatives))
        sides.append(total / batch)
    return 0.5 * (sides[0] + sides[1])


@pytest.mark.parametrize("batch", [2, 5, 16])
@pytest.mark.parametrize("dim", [3, 32])
@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_matches_eq3_transcription(batch: int, dim: int, tau: float) -> None:
    g = torch.Generator().manual_seed(batch * 100 + dim)
    out0, out1 = torch.randn(batch, dim, generator=g) * 3, torch.randn(batch, dim, generator=g)
    loss = DCLLoss(tau)(out0, out1)
    assert loss.item() == pytest.approx(dcl_reference(out0, out1, tau), rel=1e-4, abs=1e-4)


def test_scale_invariant_and_symmetric() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    loss = DCLLoss(0.2)
    assert loss(a, b).item() == pytest.approx(loss(5 * a, 0.1 * b).item(), rel=1e-5)  # normalised inputs
    assert loss(a, b).item() == pytest.approx(loss(b, a).item(), rel=1e-5)


def test_positive_pair_left_out_of_denominator() -> None:
    """Identical views: the positive term is -1/tau and the negatives are the other samples only."""
    z = torch.eye(4)  # orthogonal unit vectors: every negative has similarity 0
    tau = 0.5
    expected = -1 / tau + math.log(2 * 4 - 2)
    assert DCLLoss(tau)(z, z.clone()).item() == pytest.approx(expected, rel=1e-6)


def test_gradient_flows_to_both_views() -> None:
    a, b = torch.randn(6, 8, requires_grad=True), torch.randn(6, 8, requires_grad=True)
    DCLLoss(0.1)(a, b).backward()
    assert a.grad is not None and b.grad is not None
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


@pytest.mark.parametrize("tau", [0.0, -0.1])
def test_invalid_temperature(tau: float) -> None:
    with pytest.raises(ValueError, match="temperature must be > 0"):
        DCLLoss(tau)
