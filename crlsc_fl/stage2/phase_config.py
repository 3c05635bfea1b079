"""Stage 2 inside a federated run: the scenario's ``[stage2]`` table.

After each topology's stage-1 rounds, ``devices`` devices (a seeded sample, the same for
every topology; 0 = off) train a VQ-VAE link (:class:`LinkConfig`, whose fields this table
extends; the phase trains ``epochs`` = 2 by default) on ``train_samples`` of their images
and report PSNR/SSIM on ``eval_samples`` others, sent over ``channel``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from crlsc_fl.stage2.channels import CHANNELS, build_channel
from crlsc_fl.stage2.link import LinkConfig
from crlsc_fl.validation import base_view, component, registered

NonNegativeInt = Annotated[int, Field(ge=0)]


@component
class Stage2Config(LinkConfig):
    epochs: NonNegativeInt = 2
    devices: NonNegativeInt = 0
    train_samples: Annotated[int, Field(ge=2)] = 64
    eval_samples: Annotated[int, Field(ge=1)] = 64
    channel: registered(CHANNELS.names) = "awgn"  # type: ignore[valid-type]
    snr_db: float = 10.0  # awgn, rayleigh
    ber: float = 0.01  # bsc

    def __post_init__(self) -> None:
        build_channel(self.channel, **self.channel_params())  # its own range checks

    def channel_params(self) -> dict[str, float]:
        """The parameters of ``channel`` (its SNR or its bit error rate)."""
        return {"snr_db": self.snr_db} if self.channel in ("awgn", "rayleigh") else {"ber": self.ber} if self.channel == "bsc" else {}

    def link_config(self, seed: int) -> LinkConfig:
        """The link every sampled device trains."""
        return base_view(self, LinkConfig, seed=seed)
