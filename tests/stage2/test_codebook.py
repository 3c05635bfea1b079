"""VQ codebook (eq. 4): nearest-code quantisation, bit packing round trip, codebook loss."""

from __future__ import annotations

import math

import pytest
import torch

from crlsc_fl.stage2.channels import build_channel
from crlsc_fl.stage2.codebook import VectorQuantizer, bits_per_index, bits_to_indices, indices_to_bits


def _map(b: int, c: int, h: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, c, h, h, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_quantize_picks_the_nearest_code(groups: int) -> None:
    vq = VectorQuantizer(num_codes=12, code_dim=8, groups=groups)
    z = _map(3, 8, 2)
    indices = vq.quantize(z)
    assert indices.shape == (3, groups, 2, 2)
    d = 8 // groups
    for b in range(3):
        for g in range(groups):
            for y in range(2):
                for x in range(2):
                    vector = z[b, g * d : (g + 1) * d, y, x]
                    expected = ((vq.codes[g] - vector) ** 2).sum(-1).argmin()
                    assert indices[b, g, y, x] == expected


@pytest.mark.parametrize("groups", [1, 4])
def test_lookup_inverts_quantize_on_codes(groups: int) -> None:
    vq = VectorQuantizer(num_codes=16, code_dim=8, groups=groups)
    indices = torch.randint(0, 16, (5, groups, 3, 3))
    z_q = vq.lookup(indices)
    assert z_q.shape == (5, 8, 3, 3)
    assert torch.equal(vq.quantize(z_q), indices)


@pytest.mark.parametrize("num_codes", [2, 3, 16, 100, 256, 1024])
def test_index_bit_round_trip(num_codes: int) -> None:
    bits_each = bits_per_index(num_codes)
    assert bits_each == math.ceil(math.log2(num_codes))
    indices = torch.randint(0, num_codes, (4, 2, 3, 3), generator=torch.Generator().manual_seed(num_codes))
    bits = indices_to_bits(indices, bits_each)
    assert bits.shape == (4, 2 * 3 * 3 * bits_each) and bits.dtype == torch.uint8
    assert set(bits.unique().tolist()) <= {0, 1}
    assert torch.equal(bits_to_indices(bits, bits_each, tuple(indices.shape)), indices)


def test_bits_are_msb_first() -> None:
    assert indices_to_bits(torch.tensor([[5, 2]]), 3).tolist() == [[1, 0, 1, 0, 1, 0]]


def test_received_indices_stay_in_range() -> None:
    """With K = 5 (3 bits), bit errors can yield 5..7; the receiver wraps them into [0, 5)."""
    vq = VectorQuantizer(num_codes=5, code_dim=4)
    indices = torch.randint(0, 5, (64, 1, 2, 2))
    received = bits_to_indices(build_channel("bsc", ber=0.5).transmit(indices_to_bits(indices, 3), 0), 3, tuple(indices.shape))
    assert int(received.max()) >= 5  # the case exists
    wrapped = vq.wrap_received(received)
    assert 0 <= int(wrapped.min()) and int(wrapped.max()) < 5
    vq.lookup(wrapped)


def test_codebook_loss_moves_only_the_codes() -> None:
    vq = VectorQuantizer(num_codes=8, code_dim=4)
    z = _map(2, 4, 2).requires_grad_(True)
    z_q, indices, loss = vq(z)
    assert loss.item() == pytest.approx(float(((z.detach() - z_q.detach()) ** 2).mean()))
    loss.backward()
    assert z.grad is None  # sg[z_e]: the frozen encoder's output gets no gradient
    assert vq.codes.grad is not None and vq.codes.grad.abs().sum() > 0


def test_gradient_steps_and_kmeans_lower_the_codebook_loss() -> None:
    z = _map(16, 8, 2, seed=1)
    vq = VectorQuantizer(num_codes=8, code_dim=8, groups=2)
    before = vq(z)[2].item()
    optimizer = torch.optim.Adam(vq.parameters(), lr=0.05)
    for _ in range(30):
        loss = vq(z)[2]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert vq(z)[2].item() < 0.8 * before
    fresh = VectorQuantizer(num_codes=8, code_dim=8, groups=2)
    fresh.init_kmeans(z, iterations=10)
    assert fresh(z)[2].item() < 0.8 * before


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_codes": 1, "code_dim": 4}, "num_codes=1 out of range [2, inf)"),
        ({"num_codes": 8, "code_dim": 6, "groups": 4}, "groups=4 must be >= 1 and divide the feature channels (6)"),
    ],
)
def test_bad_codebooks(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError) as err:
        VectorQuantizer(**kwargs)
    assert message in str(err.value)


def test_bad_inputs() -> None:
    vq = VectorQuantizer(num_codes=8, code_dim=4)
    with pytest.raises(ValueError, match=r"expected a feature map \(B, 4, h, w\)"):
        vq.quantize(torch.zeros(1, 5, 2, 2))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 8\)"):
        indices_to_bits(torch.tensor([[8]]), 3)
