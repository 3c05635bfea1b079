"""Channel models: measured bit-error rates match theory on 10^6 bits; bad parameters fail clearly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from crlsc_fl.registry import UnknownNameError
from crlsc_fl.stage2.channels import CHANNELS, bpsk_awgn_ber, bpsk_rayleigh_ber, bsc_ber, build_channel

N_BITS = 10**6


@pytest.fixture(scope="module")
def bits() -> torch.Tensor:
    return torch.randint(0, 2, (N_BITS,), generator=torch.Generator().manual_seed(7), dtype=torch.uint8)


def test_registry_names() -> None:
    assert CHANNELS.names() == ["awgn", "bsc", "ideal", "rayleigh"]


@pytest.mark.parametrize(
    "name, params",
    [
        ("bsc", {"ber": 0.001}), ("bsc", {"ber": 0.05}), ("bsc", {"ber": 0.3}), ("bsc", {"ber": 0.5}),
        ("awgn", {"snr_db": -5.0}), ("awgn", {"snr_db": 0.0}), ("awgn", {"snr_db": 4.0}), ("awgn", {"snr_db": 8.0}),
        ("rayleigh", {"snr_db": 0.0}), ("rayleigh", {"snr_db": 10.0}), ("rayleigh", {"snr_db": 25.0}),
    ],
)
def test_measured_ber_matches_theory(bits: torch.Tensor, name: str, params: dict[str, float]) -> None:
    channel = build_channel(name, **params)
    p = channel.theoretical_ber()
    measured = float((channel.transmit(bits, generator=11) != bits).float().mean())
    sigma = math.sqrt(p * (1 - p) / N_BITS)  # binomial standard error of the measured rate
    assert abs(measured - p) <= 5 * sigma + 1e-12, f"{name} {params}: measured {measured}, theory {p}"


@pytest.mark.parametrize(
    "fn, value, expected",
    [
        (bsc_ber, 0.2, 0.2),
        (bpsk_awgn_ber, 0.0, 0.0786496),  # Q(sqrt(2))
        (bpsk_awgn_ber, 9.6, 1.0e-5),  # the textbook 10^-5 point of BPSK
        (bpsk_rayleigh_ber, 0.0, 0.1464466),  # 0.5 (1 - sqrt(1/2))
        (bpsk_rayleigh_ber, 20.0, 0.0024814),
    ],
)
def test_theory_values(fn, value: float, expected: float) -> None:
    assert fn(value) == pytest.approx(expected, rel=0.03)


def test_ber_falls_with_snr() -> None:
    snrs = [-20.0, -5.0, 0.0, 5.0, 10.0, 40.0]
    for fn in (bpsk_awgn_ber, bpsk_rayleigh_ber):
        values = [fn(s) for s in snrs]
        assert all(a > b for a, b in zip(values, values[1:]))
        assert values[0] < 0.5


def test_ideal_and_zero_ber_are_error_free(bits: torch.Tensor) -> None:
    assert torch.equal(build_channel("ideal").transmit(bits, 1), bits)
    assert torch.equal(build_channel("bsc", ber=0.0).transmit(bits, 1), bits)


@pytest.mark.parametrize("name, params", [("bsc", {"ber": 0.1}), ("awgn", {"snr_db": 0.0}), ("rayleigh", {"snr_db": 5.0})])
def test_types_shapes_and_seeds(name: str, params: dict[str, float]) -> None:
    channel = build_channel(name, **params)
    array = np.random.default_rng(0).integers(0, 2, size=(4, 500)).astype(np.int64)
    out = channel.transmit(array, 3)
    assert isinstance(out, np.ndarray) and out.shape == array.shape and out.dtype == array.dtype
    assert set(np.unique(out)) <= {0, 1}
    tensor = torch.from_numpy(array).to(torch.uint8)
    assert torch.equal(channel.transmit(tensor, 3), channel.transmit(tensor, torch.Generator().manual_seed(3)))
    assert not torch.equal(channel.transmit(tensor, 3), channel.transmit(tensor, 4))
    assert channel.transmit(torch.zeros(0, dtype=torch.uint8), 3).numel() == 0


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("awgn", {"snr_db": -40}, "awgn.snr-db=-40: out of range [-20, 40]"),
        ("awgn", {"snr_db": 41.0}, "awgn.snr-db=41.0: out of range [-20, 40]"),
        ("rayleigh", {"snr_db": float("nan")}, "rayleigh.snr-db=nan: out of range [-20, 40]"),
        ("bsc", {"ber": 0.7}, "bsc.ber=0.7: out of range [0, 0.5]"),
        ("bsc", {"ber": -0.01}, "bsc.ber=-0.01: out of range [0, 0.5]"),
        ("bsc", {"snr_db": 3.0}, "channel 'bsc' takes ber; got snr_db"),
        ("awgn", {}, "channel 'awgn' takes snr_db; got no parameters"),
        ("ideal", {"ber": 0.1}, "channel 'ideal' takes no parameters; got ber"),
    ],
)
def test_bad_parameters(name: str, params: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as err:
        build_channel(name, **params)
    assert message in str(err.value)


def test_unknown_channel() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown channel 'fiber'; valid: awgn, bsc, ideal, rayleigh"):
        build_channel("fiber")


@pytest.mark.parametrize("fn, value", [(bpsk_awgn_ber, 50.0), (bpsk_rayleigh_ber, -21.0), (bsc_ber, 0.51)])
def test_theory_functions_check_ranges(fn, value: float) -> None:
    with pytest.raises(ValueError, match="out of range"):
        fn(value)
