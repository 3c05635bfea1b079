"""Digital channels that carry the codebook indices of the semantic link (paper sec. 3.2).

The paper sends the VQ-VAE indices q(z|x) of eq. (4) to the decoder but does not model the
channel; here the indices travel as bits through one of the :data:`CHANNELS`:

- ``ideal``: bits arrive unchanged.
- ``bsc``: binary symmetric channel, every bit flips independently with probability ``ber``.
- ``awgn``: BPSK (bit 0 -> +1, bit 1 -> -1, Es = 1) plus real Gaussian noise of variance
  N0 / 2 with Es/N0 = ``snr_db``, hard decision at 0. Bit-error rate Q(sqrt(2 SNR)).
- ``rayleigh``: the same BPSK symbols times a flat Rayleigh fade h ~ CN(0, 1) drawn anew for
  every symbol, complex noise CN(0, N0), coherent detection sign(Re(conj(h) y)) (the
  receiver knows h). Average bit-error rate 0.5 (1 - sqrt(SNR / (1 + SNR))).

Each channel takes a bit tensor (torch or numpy, any shape, values 0/1) and a seeded
generator, and returns the received bits with the same type, shape and dtype.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from typing import Annotated, Any, TypeVar

import numpy as np
import torch
from pydantic import Field

from crlsc_fl.registry import Registry
from crlsc_fl.validation import build_component, checked, component, in_range

SNR_RANGE_DB = (-20.0, 40.0)
BER_RANGE = (0.0, 0.5)
# a channel's parameters are component fields: build_channel reports a bad one as
# ``awgn.snr-db=-40: out of range [-20, 40]``
SnrDb = Annotated[float, in_range(*SNR_RANGE_DB), Field(description="Es/N0 in dB")]
BitErrorRate = Annotated[float, in_range(*BER_RANGE), Field(description="probability that a bit flips")]
_check_snr_db, _check_ber = checked(SnrDb, "snr_db"), checked(BitErrorRate, "ber")

Bits = TypeVar("Bits", torch.Tensor, np.ndarray)


def as_generator(generator: torch.Generator | int | None) -> torch.Generator:
    """A CPU torch generator from a generator, a seed, or ``None`` (seed 0, so runs repeat)."""
    if isinstance(generator, torch.Generator):
        return generator
    return torch.Generator().manual_seed(0 if generator is None else int(generator))


def db_to_linear(snr_db: float) -> float:
    return 10.0 ** (_check_snr_db(snr_db) / 10.0)


def bsc_ber(ber: float) -> float:
    """Theoretical bit-error rate of the binary symmetric channel: its crossover probability."""
    return float(_check_ber(ber))


def bpsk_awgn_ber(snr_db: float) -> float:
    """Theoretical BPSK bit-error rate over AWGN: Q(sqrt(2 Es/N0)) = erfc(sqrt(Es/N0)) / 2."""
    return 0.5 * math.erfc(math.sqrt(db_to_linear(snr_db)))


def bpsk_rayleigh_ber(snr_db: float) -> float:
    """Average BPSK bit-error rate over flat Rayleigh fading with coherent detection.

    0.5 (1 - sqrt(snr / (1 + snr))), snr the average Es/N0 (Proakis, Digital Communications,
    sec. 14.3).
    """
    snr = db_to_linear(snr_db)
    return 0.5 * (1.0 - math.sqrt(snr / (1.0 + snr)))


class Channel(ABC):
    """A memoryless binary channel: ``transmit(bits, generator)`` returns the received bits."""

    name: str = ""

    def transmit(self, bits: Bits, generator: torch.Generator | int | None = None) -> Bits:
        """Send ``bits`` (0/1 values, any shape); numpy in -> numpy out, torch in -> torch out."""
        if isinstance(bits, np.ndarray):
            return self._transmit(torch.from_numpy(np.ascontiguousarray(bits)), generator).numpy()
        return self._transmit(bits, generator)

    def _transmit(self, tensor: torch.Tensor, generator: torch.Generator | int | None) -> torch.Tensor:
        sent = tensor.reshape(-1).to(device="cpu", dtype=torch.bool)
        received = self._send(sent, as_generator(generator)) if sent.numel() else sent
        return received.reshape(tensor.shape).to(device=tensor.device, dtype=tensor.dtype)

    @abstractmethod
    def _send(self, bits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Received bits (1-D bool) for the sent bits (1-D bool)."""

    @abstractmethod
    def theoretical_ber(self) -> float:
        """The bit-error rate theory predicts for this channel."""

    def describe(self) -> dict[str, Any]:
        """Name and parameters, for reports (e.g. ``{"channel": "awgn", "snr_db": 10.0}``)."""
        return {"channel": self.name, **dataclasses.asdict(self)}  # type: ignore[call-overload]


CHANNELS: Registry[type[Channel]] = Registry("channel")


@CHANNELS.register("ideal")
@component
class IdealChannel(Channel):
    """Error-free channel: the reference point of every sweep."""

    name = "ideal"

    def _send(self, bits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return bits.clone()

    def theoretical_ber(self) -> float:
        return 0.0


@CHANNELS.register("bsc")
@component
class BinarySymmetricChannel(Channel):
    """Each bit flips independently with probability ``ber`` in [0, 0.5]."""

    ber: BitErrorRate
    name = "bsc"

    def _send(self, bits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        flips = torch.rand(bits.numel(), generator=generator) < self.ber
        return bits ^ flips

    def theoretical_ber(self) -> float:
        return bsc_ber(self.ber)


class _BpskChannel(Channel):
    """BPSK over a noisy link: map bits to +-1, let ``_soft`` corrupt them, decide on the sign."""

    snr_db: float

    @property
    def noise_std(self) -> float:
        """Standard deviation per real dimension, sqrt(N0 / 2), for unit symbol energy."""
        return math.sqrt(0.5 / db_to_linear(self.snr_db))

    def _send(self, bits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        symbols = 1.0 - 2.0 * bits.to(torch.float64)  # bit 0 -> +1, bit 1 -> -1
        return self._soft(symbols, generator) < 0.0

    @abstractmethod
    def _soft(self, symbols: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The real decision statistic for each transmitted symbol."""


@CHANNELS.register("awgn")
@component
class AwgnChannel(_BpskChannel):
    """BPSK over additive white Gaussian noise at Es/N0 = ``snr_db`` dB, hard decision."""

    snr_db: SnrDb
    name = "awgn"

    def _soft(self, symbols: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(symbols.shape, generator=generator, dtype=symbols.dtype)
        return symbols + self.noise_std * noise

    def theoretical_ber(self) -> float:
        return bpsk_awgn_ber(self.snr_db)


@CHANNELS.register("rayleigh")
@component
class RayleighChannel(_BpskChannel):
    """BPSK over flat Rayleigh fading, a new fade per symbol, average Es/N0 = ``snr_db`` dB."""

    snr_db: SnrDb
    name = "rayleigh"

    def _soft(self, symbols: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        def complex_normal(std: float) -> tuple[torch.Tensor, torch.Tensor]:
            draw = torch.randn((2, *symbols.shape), generator=generator, dtype=symbols.dtype)
            return std * draw[0], std * draw[1]

        h_re, h_im = complex_normal(math.sqrt(0.5))  # E|h|^2 = 1, so the average SNR is snr_db
        n_re, n_im = complex_normal(self.noise_std)
        y_re, y_im = h_re * symbols + n_re, h_im * symbols + n_im
        return h_re * y_re + h_im * y_im  # Re(conj(h) y): coherent detection undoes the phase

    def theoretical_ber(self) -> float:
        return bpsk_rayleigh_ber(self.snr_db)


def build_channel(name: str, **params: float) -> Channel:
    """Build a registered channel, e.g. ``build_channel("awgn", snr_db=10)``.

    Unknown names list the valid ones; missing or extra parameters name what the channel
    takes; a bad value fails as ``awgn.snr-db=-40: out of range [-20, 40]``.
    """
    cls = CHANNELS.get(name)
    fields = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    extra = sorted(set(params) - set(fields))
    missing = sorted(set(fields) - set(params))
    if extra or missing:
        takes = ", ".join(fields) or "no parameters"
        raise ValueError(
            f"channel {name!r} takes {takes}; got {', '.join(sorted(params)) or 'no parameters'}"
        )
    return build_component(cls, params, name)
