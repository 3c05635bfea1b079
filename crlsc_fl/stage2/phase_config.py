"""Stage 2 inside a federated run: the scenario's ``[stage2]`` table.

After each topology's stage-1 rounds, ``devices`` devices (a seeded sample, the same for
every topology; 0 = off) train a VQ-VAE link (:class:`LinkConfig`, whose fields this table
extends; the phase trains ``epochs`` = 2 by default) on ``train_samples`` of their images
and report PSNR/SSIM on ``eval_samples`` others, sent over ``channel`` (its ``snr_db`` or
``ber`` checked by the channel's own range when the table is read).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from crlsc_fl.stage2.channels import CHANNELS, BitErrorRate, SnrDb
from crlsc_fl.stage2.link import LinkConfig
from crlsc_fl.validation import base_view, component, registered

NonNegativeInt = Annotated[int, Field(ge=0)]


@component
class Stage2Config(LinkConfig):
    epochs: Annotated[NonNegativeInt, Field(description="epochs of codebook and decoder training on each sampled device")] = 2
    devices: Annotated[
        NonNegativeInt,
        Field(description="devices that train a link after each topology (a seeded sample, the same in every topology; 0: no stage 2)"),
    ] = 0
    train_samples: Annotated[int, Field(ge=2, description="images of its shard a device trains its link on")] = 64
    eval_samples: Annotated[int, Field(ge=1, description="other images of its shard on which a device reports PSNR / SSIM")] = 64
    channel: Annotated[
        str, registered(CHANNELS.names), Field(description="the channel the indices cross: `ideal`, `bsc`, `awgn` or `rayleigh`")
    ] = "awgn"
    snr_db: Annotated[SnrDb, Field(description="Es/N0 in dB of the `awgn` and `rayleigh` channels")] = 10.0
    ber: Annotated[BitErrorRate, Field(description="bit-error rate of the `bsc` channel")] = 0.01

    def channel_params(self) -> dict[str, float]:
        """The parameters of ``channel`` (its SNR or its bit error rate)."""
        return {"snr_db": self.snr_db} if self.channel in ("awgn", "rayleigh") else {"ber": self.ber} if self.channel == "bsc" else {}

    def link_config(self, seed: int) -> LinkConfig:
        """The link every sampled device trains."""
        return base_view(self, LinkConfig, seed=seed)
