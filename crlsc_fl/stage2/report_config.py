"""What a stage-2 report evaluates and how: the settings of ``crlsc-fl stage2``.

A component config like a scenario table (:mod:`crlsc_fl.validation`): built with
``build_component(ReportConfig, values, "report")``, a bad setting fails before any
encoder is loaded as ``report.key=value: what is allowed`` (e.g.
``report.snr-db.0=-40.0: out of range [-20, 40]``), an unknown channel or probe name with
the registry's list.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from pydantic import Field

from crlsc_fl.accelerator import ACCELERATORS
from crlsc_fl.models.encoders import FEATURE_LAYERS
from crlsc_fl.stage2.channels import BitErrorRate, Channel, IdealChannel, SnrDb, build_channel
from crlsc_fl.stage2.link import LinkConfig
from crlsc_fl.stage2.lowlight import DEFAULT_BRIGHTNESS, DEFAULT_GAMMA
from crlsc_fl.stage2.probes import PROBES, ProbeConfig
from crlsc_fl.validation import component, in_range, registered

# A channel point decodes the test images the channel changed (~1.2 CPU-s per 1,000), so the
# sweep is sized for the 50 encoders of the main run: AWGN and Rayleigh at 6 SNRs, BSC at 5
# bit-error rates (measured: 12.5 CPU-s per encoder for these 18 points, a third of its time).
DEFAULT_SNR_DB = (-10.0, -5.0, 0.0, 5.0, 10.0, 20.0)
DEFAULT_BER = (1e-3, 1e-2, 0.05, 0.2, 0.5)
# BPSK bit-error rates 0.21, 0.079, 0.006; from ~10 dB on (BER 4e-6) the 32 bits of an image
# arrive intact and the PSNR is the ideal channel's
DEFAULT_TABLE_SNR_DB = (-5.0, 0.0, 5.0)

PositiveInt = Annotated[int, in_range(1)]


@component
class ReportConfig:
    """The datasets, probes, link and channel sweep of a stage-2 report."""

    dataset: Annotated[
        str, Field(description="reconstruction data (the paper uses Animal / CelebA, not available offline)")
    ] = "cifar10"
    probe_datasets: Annotated[
        tuple[str, ...], Field(description="datasets of the probes; ones that cannot be loaded are listed as skipped")
    ] = ("cifar10", "cifar100", "stl10")
    probes: Annotated[tuple[str, ...], Field(description="probe kinds (`linear`, `mlp`)")] = ("linear", "mlp")
    data_dir: Annotated[str | None, Field(description="data directory (None: `$CRLSC_DATA_DIR`, else the cache)")] = None
    download: Annotated[bool, Field(description="try torchvision downloads for datasets not on disk")] = True
    train_samples: Annotated[PositiveInt, Field(description="training images per dataset (probes, link)")] = 2000
    test_samples: Annotated[PositiveInt, Field(description="test images per dataset")] = 1000
    probe_layer: Annotated[
        str, registered(lambda: FEATURE_LAYERS), Field(description="encoder layer pooled for the probes")
    ] = "layer4"
    link: Annotated[
        LinkConfig, Field(description="the link's settings (5 epochs on 2,000 images: ~21 CPU-s per encoder, half its time)")
    ] = LinkConfig(epochs=5)
    probe: Annotated[ProbeConfig, Field(description="how the probes train")] = ProbeConfig()
    channels: Annotated[
        tuple[str, ...], Field(description="channels of the sweep (`awgn`, `rayleigh`, `bsc`; the ideal channel always)")
    ] = ("awgn", "rayleigh", "bsc")
    snr_db: Annotated[tuple[SnrDb, ...], Field(description="SNRs (dB) of the AWGN and Rayleigh sweeps")] = DEFAULT_SNR_DB
    ber: Annotated[tuple[BitErrorRate, ...], Field(description="bit-error rates of the BSC sweep")] = DEFAULT_BER
    table_snr_db: Annotated[
        tuple[SnrDb, ...], Field(description="AWGN SNRs of the paired table, swept besides `snr_db`")
    ] = DEFAULT_TABLE_SNR_DB
    gamma: Annotated[float, in_range(0, open_low=True), Field(description="low-light gamma")] = DEFAULT_GAMMA
    brightness: Annotated[
        float, in_range(0, 1, open_low=True), Field(description="low-light brightness gain")
    ] = DEFAULT_BRIGHTNESS
    grid_columns: Annotated[PositiveInt, Field(description="images per row of the reconstruction grids")] = 8
    grid_pairs: Annotated[PositiveInt, Field(description="rows of original / reconstruction pairs in the grids")] = 4
    figure_devices: Annotated[
        int, in_range(0), Field(description="reconstruction / degradation figures for this many devices per topology")
    ] = 1
    arch: Annotated[str | None, Field(description="fail unless every encoder has this architecture")] = None
    stem: Annotated[str | None, Field(description="fail unless every encoder has this stem")] = None
    skip_probes: Annotated[bool, Field(description="no probes")] = False
    skip_link: Annotated[bool, Field(description="no link")] = False
    seed: Annotated[int, Field(description="seed of the samples, probes, links and channels")] = 0
    accelerator: Annotated[
        str, registered(lambda: ACCELERATORS),
        Field(description="where encoders, probes and links run: `cpu`, `cuda` or `auto`"),
    ] = "cpu"

    def __post_init__(self) -> None:
        for probe in self.probes:
            PROBES.get(probe)
        self.sweep()  # every channel name checked before any work starts

    def settings(self) -> dict[str, Any]:
        """What determines an encoder's numbers (not which encoders draw figures): the key
        of its stored results."""
        values = dataclasses.asdict(self)
        values.pop("figure_devices")
        return values

    def sweep(self) -> list[Channel]:
        """The ideal channel, then every requested channel at every SNR / bit-error rate
        (AWGN also at the paired table's SNRs)."""
        sweep: list[Channel] = [IdealChannel()]
        for name in self.channels:
            if name == "ideal":
                continue
            key, values = ("ber", self.ber) if name == "bsc" else ("snr_db", self.snr_db)
            if name == "awgn":
                values = tuple(sorted(set(values) | set(self.table_snr_db)))
            sweep += [build_channel(name, **{key: v}) for v in values]
        return sweep
