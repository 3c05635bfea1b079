"""Stage-2 report for finished runs or saved encoders (paper sec. 4.2-4.3).

For every encoder: probes (linear and 3-layer MLP, top-1 / top-5) on each probe dataset
that can be loaded, then the semantic link (train codebook + decoder, sweep AWGN / Rayleigh
SNR and BSC bit-error rate, low-light test). Writes to ``out``:

- ``probes.json``, ``probes.md``: the probe table (datasets that could not be loaded are
  listed with the reason);
- ``link.md``: per encoder, bits per image against PNG / JPEG, ideal-channel and low-light
  PSNR / SSIM;
- ``channel_curves.png``: PSNR / SSIM vs SNR and bit-error rate, per topology (or encoder);
- ``reconstruction-<encoder>.png``: normal and low-light reconstruction grids side by side;
- ``degradation-<encoder>.png``: the same images decoded at falling AWGN SNR;
- ``summary.json``: every number above, the configuration and the figure paths.

Everything runs on ``accelerator`` (``--accelerator``: ``cpu``, ``cuda`` or ``auto``; see
:mod:`crlsc_fl.accelerator`). Encoders come from ``--encoder`` files or from ``<run-dir>/state/device-*/encoder.pt``;
the topology comes from the ``topology`` field saved with ``save_encoder(..., topology=...)``,
else the run directory's name, else ``"default"``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crlsc_fl.accelerator import ACCELERATORS, module_device, resolve_device
from crlsc_fl.data.datasets import DatasetNotFoundError, ImageDataset, load_dataset
from crlsc_fl.models.encoders import LocalEncoder
from crlsc_fl.stage2.channels import Channel, IdealChannel, build_channel
from crlsc_fl.stage2.features import as_image_tensor, cached_features, load_frozen_encoder
from crlsc_fl.stage2.figures import (
    reconstruction_grid,
    save_channel_curves,
    save_degradation_figure,
    save_reconstruction_figure,
)
from crlsc_fl.stage2.link import LinkConfig, evaluate_link, reconstruct, train_decoder
from crlsc_fl.stage2.lowlight import DEFAULT_BRIGHTNESS, DEFAULT_GAMMA, darken
from crlsc_fl.stage2.probes import PROBES, ProbeConfig, train_probe

DEFAULT_SNR_DB = (-10.0, -5.0, 0.0, 3.0, 6.0, 10.0, 15.0, 20.0, 30.0)
DEFAULT_BER = (1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.2, 0.3, 0.5)
DEGRADATION_SNR_DB = (10.0, 3.0, 0.0, -5.0)


@dataclass(frozen=True)
class EncoderEntry:
    """One encoder to report on."""

    label: str  # unique, file-name safe
    path: Path
    topology: str
    device: str


@dataclass(frozen=True)
class ReportConfig:
    dataset: str = "cifar10"  # reconstruction data (the paper uses Animal / CelebA, not available offline)
    probe_datasets: tuple[str, ...] = ("cifar10", "cifar100", "stl10")
    probes: tuple[str, ...] = ("linear", "mlp")
    data_dir: str | None = None
    download: bool = True  # try torchvision downloads for datasets not on disk
    train_samples: int = 2000
    test_samples: int = 500
    probe_layer: str = "layer4"
    link: LinkConfig = LinkConfig()
    probe: ProbeConfig = ProbeConfig()
    channels: tuple[str, ...] = ("awgn", "rayleigh", "bsc")
    snr_db: tuple[float, ...] = DEFAULT_SNR_DB
    ber: tuple[float, ...] = DEFAULT_BER
    gamma: float = DEFAULT_GAMMA
    brightness: float = DEFAULT_BRIGHTNESS
    grid_columns: int = 8
    grid_pairs: int = 4
    arch: str | None = None
    stem: str | None = None
    skip_probes: bool = False
    skip_link: bool = False
    seed: int = 0
    accelerator: str = "cpu"  # where encoders, probes and links run: cpu, cuda or auto

    def __post_init__(self) -> None:
        if self.accelerator not in ACCELERATORS:
            raise ValueError(f"--accelerator={self.accelerator!r} is not allowed; valid: {', '.join(ACCELERATORS)}")
        for name in ("train_samples", "test_samples", "grid_columns", "grid_pairs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} out of range [1, inf)")
        for probe in self.probes:
            PROBES.get(probe)
        self.sweep()  # every channel and value checked before any work starts
        darken(np.zeros((1, 1, 1, 3), np.uint8), self.gamma, self.brightness)

    def sweep(self) -> list[Channel]:
        """The ideal channel, then every requested channel at every SNR / bit-error rate."""
        sweep: list[Channel] = [IdealChannel()]
        for name in self.channels:
            if name == "ideal":
                continue
            key, values = ("ber", self.ber) if name == "bsc" else ("snr_db", self.snr_db)
            sweep += [build_channel(name, **{key: v}) for v in values]
        return sweep


def _checkpoint_extra(path: Path) -> dict[str, Any]:
    try:
        extra = torch.load(path, map_location="cpu", weights_only=True).get("extra", {})
    except Exception:  # load_frozen_encoder reports unreadable files with the full reason
        return {}
    return extra if isinstance(extra, dict) else {}


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "encoder"


def run_encoder_files(run_dir: Path, state_dir: str | os.PathLike[str] | None = None, device_ids: Sequence[int] = ()) -> list[Path]:
    """The device encoders of a finished federated run, from device-local storage.

    A run directory's ``config.json`` names the run id; its devices saved their encoders
    under ``<state root>/<run id>/<topology>/device-<id>/encoder.pt`` (state root: ``state_dir``,
    else ``$CRLSC_STATE_DIR``, else the cache; see :mod:`crlsc_fl.federation.device_store`).
    """
    from crlsc_fl.federation.device_store import state_root

    config_file = run_dir / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: is {run_dir} a run directory of crlsc_fl.launch?")
    run_id = json.loads(config_file.read_text())["run_id"]
    root = Path(state_dir).expanduser().resolve() if state_dir else state_root()
    files = sorted(
        f for f in (root / str(run_id)).glob("*/device-*/encoder.pt")
        if not device_ids or int(f.parent.name.split("-")[1]) in device_ids
    )
    if not files:
        raise FileNotFoundError(
            f"no device encoders of run {run_id} under {root / str(run_id)} (devices {list(device_ids) or 'all'}); a run "
            "removes each topology's device state once it is done unless it ran with scenario.keep-device-state = true"
        )
    return files


def discover_encoders(
    encoders: Sequence[str | os.PathLike[str]] = (), run_dirs: Sequence[str | os.PathLike[str]] = (),
    state_dir: str | os.PathLike[str] | None = None, device_ids: Sequence[int] = (),
) -> list[EncoderEntry]:
    """Encoder files given directly, plus the device encoders of each finished run."""
    # user paths are relative to the working directory; resolved once here so that every
    # message and label names the same absolute file
    found: list[tuple[Path, str | None]] = [(Path(p).expanduser().resolve(), None) for p in encoders]
    for run_dir in (Path(p).expanduser().resolve() for p in run_dirs):
        if not run_dir.is_dir():
            raise FileNotFoundError(f"run directory {run_dir} does not exist")
        found += [(f, f.parent.parent.name) for f in run_encoder_files(run_dir, state_dir, device_ids)]
    if not found:
        raise ValueError("no encoders given: pass --encoder PATH or --run-dir RUN_DIR")
    entries, labels = [], set()
    for path, run_name in found:
        if not path.is_file():
            raise FileNotFoundError(f"encoder file {path} does not exist")
        extra = _checkpoint_extra(path)
        device = str(extra.get("device", path.parent.name if run_name else path.stem))
        topology = str(extra.get("topology", run_name or "default"))
        label = _safe(f"{run_name}-device-{device}" if run_name else device)
        while label in labels:  # two files with one name: keep labels unique
            label += "_"
        labels.add(label)
        entries.append(EncoderEntry(label, path, topology, device))
    return entries


def _sample(dataset: ImageDataset, count: int, seed: int) -> ImageDataset:
    """A random subset in random order (the offline CIFAR-10 rows are grouped by class, so
    neither the head nor a sorted subset would show every class in the figures)."""
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(dataset), size=min(count, len(dataset)), replace=False)
    return ImageDataset(dataset.name, np.asarray(dataset.images[picked]), dataset.labels[picked], dataset.class_names)


@dataclass
class _Data:
    """Datasets loaded once and shared by all encoders; ``missing`` holds why some could not be."""

    splits: dict[str, tuple[ImageDataset, ImageDataset]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def get(self, name: str, config: ReportConfig) -> tuple[ImageDataset, ImageDataset] | None:
        if name not in self.splits and name not in self.missing:
            try:
                train = _sample(load_dataset(name, "train", config.data_dir, download=config.download), config.train_samples, config.seed)
                test = _sample(load_dataset(name, "test", config.data_dir, download=config.download), config.test_samples, config.seed + 1)
                self.splits[name] = (train, test)
            except DatasetNotFoundError as err:
                self.missing[name] = str(err)
        return self.splits.get(name)


def run_probes(encoder: LocalEncoder, data: _Data, config: ReportConfig, log: Callable[[str], None]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in config.probe_datasets:
        splits = data.get(name, config)
        if splits is None:
            rows.append({"dataset": name, "skipped": data.missing[name]})
            continue
        train, test = splits
        tx = cached_features(encoder, train.images, name, "train", config.probe_layer)
        vx = cached_features(encoder, test.images, name, "test", config.probe_layer)
        for probe in config.probes:
            result = train_probe(probe, tx, train.labels, vx, test.labels, len(train.class_names), config.probe,
                                 device=module_device(encoder))
            rows.append({"dataset": name, **dataclasses.asdict(result)})
            log(f"  probe {probe} on {name}: top-1 {100 * result.top1:.1f}%, top-5 {100 * result.top5:.1f}%")
    return rows


def run_link(entry: EncoderEntry, encoder: LocalEncoder, data: _Data, config: ReportConfig, out: Path, log: Callable[[str], None]) -> dict[str, Any]:
    splits = data.get(config.dataset, config)
    if splits is None:
        raise DatasetNotFoundError(data.missing[config.dataset])
    train, test = splits
    trained = train_decoder(encoder, train.images, config.link, log=lambda m: log("  " + m))
    link = trained.link
    normal = evaluate_link(link, test.images, config.sweep(), seed=config.seed)
    dark_images = darken(test.images, config.gamma, config.brightness)
    dark = evaluate_link(link, dark_images, [IdealChannel()], seed=config.seed)[0]
    dark_vs_original = evaluate_link(link, dark_images, [IdealChannel()], seed=config.seed, targets=test.images)[0]
    ideal = normal[0]
    log(f"  link: {ideal['bits_per_image']:.0f} bits/image, ideal PSNR {ideal['psnr']:.2f} dB, SSIM {ideal['ssim']:.3f}; "
        f"low-light PSNR {dark['psnr']:.2f} dB")

    shown = config.grid_columns * config.grid_pairs
    indices = link.encode(test.images[:shown])
    dark_indices = link.encode(dark_images[:shown])
    grids = {
        "normal": reconstruction_grid(test.images[:shown], reconstruct(link, indices)[0], config.grid_columns),
        f"low-light (gamma {config.gamma:g}, brightness {config.brightness:g})": reconstruction_grid(
            dark_images[:shown], reconstruct(link, dark_indices)[0], config.grid_columns
        ),
    }
    figures = {"reconstruction": out / f"reconstruction-{entry.label}.png", "degradation": out / f"degradation-{entry.label}.png"}
    title = f"{entry.label} ({entry.topology}), ideal channel, {link.bits_per_image} bits/image"
    save_reconstruction_figure(figures["reconstruction"], grids, title)
    decoded = {"ideal": reconstruct(link, indices[: config.grid_columns])[0]}
    for snr in DEGRADATION_SNR_DB:
        decoded[f"AWGN {snr:g} dB"] = reconstruct(link, indices[: config.grid_columns], build_channel("awgn", snr_db=snr), config.seed)[0]
    originals = as_image_tensor(test.images[: config.grid_columns])
    save_degradation_figure(figures["degradation"], originals, decoded, f"{entry.label}: reconstructions vs channel SNR")
    return {
        "bits_per_image": link.bits_per_image,
        "train_history": trained.history,
        "train_seconds": trained.seconds,
        "channels": normal,
        "lowlight": {"vs_darkened_input": dark, "vs_original": dark_vs_original, "gamma": config.gamma, "brightness": config.brightness},
        "figures": {k: str(v) for k, v in figures.items()},
    }


def probe_markdown(entries: Sequence[EncoderEntry], probe_rows: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "| encoder | topology | dataset | probe | top-1 (%) | top-5 (%) | train / test images |",
        "|---|---|---|---|---|---|---|",
    ]
    skipped: dict[str, str] = {}
    for entry in entries:
        for row in probe_rows.get(entry.label, []):
            if "skipped" in row:
                skipped[row["dataset"]] = row["skipped"]
                continue
            lines.append(
                f"| {entry.label} | {entry.topology} | {row['dataset']} | {row['probe']} | {100 * row['top1']:.1f} | "
                f"{100 * row['top5']:.1f} | {row['num_train']} / {row['num_test']} |"
            )
    if skipped:
        lines += ["", "Datasets not evaluated:", ""] + [f"- {name}: {reason}" for name, reason in skipped.items()]
    return "\n".join(lines) + "\n"


def link_markdown(entries: Sequence[EncoderEntry], links: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| encoder | topology | bits / image | PNG bits | JPEG bits | link / PNG | link / JPEG | PSNR (dB) | SSIM | "
        "low-light PSNR (dB) | low-light SSIM |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in entries:
        if entry.label not in links:
            continue
        ideal, dark = links[entry.label]["channels"][0], links[entry.label]["lowlight"]["vs_darkened_input"]
        lines.append(
            f"| {entry.label} | {entry.topology} | {ideal['bits_per_image']:.0f} | {ideal['png_bits_per_image']:.0f} | "
            f"{ideal['jpeg_bits_per_image']:.0f} | {ideal['ratio_png']:.4f} | {ideal['ratio_jpeg']:.4f} | {ideal['psnr']:.2f} | "
            f"{ideal['ssim']:.3f} | {dark['psnr']:.2f} | {dark['ssim']:.3f} |"
        )
    lines += ["", "Ideal channel; low-light rows compare the reconstruction with the darkened image that was sent."]
    return "\n".join(lines) + "\n"


def make_report(
    entries: Sequence[EncoderEntry], out: str | os.PathLike[str], config: ReportConfig = ReportConfig(),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Write the probe table, channel curves, reconstruction figures and ``summary.json``."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    device = resolve_device(config.accelerator, key="--accelerator")
    # Load every encoder first, so a wrong file fails before minutes of work.
    encoders = {e.label: load_frozen_encoder(e.path, arch=config.arch, stem=config.stem, device=device) for e in entries}
    data = _Data()
    if not config.skip_link and data.get(config.dataset, config) is None:
        raise DatasetNotFoundError(data.missing[config.dataset])
    probe_rows: dict[str, list[dict[str, Any]]] = {}
    links: dict[str, dict[str, Any]] = {}
    for entry in entries:
        log(f"encoder {entry.label} ({entry.path}, topology {entry.topology})")
        torch.manual_seed(config.seed)
        if not config.skip_probes:
            probe_rows[entry.label] = run_probes(encoders[entry.label], data, config, log)
        if not config.skip_link:
            links[entry.label] = run_link(entry, encoders[entry.label], data, config, out_dir, log)

    figures: dict[str, str] = {}
    if probe_rows:
        (out_dir / "probes.json").write_text(json.dumps(probe_rows, indent=2))
        (out_dir / "probes.md").write_text(probe_markdown(entries, probe_rows))
        figures["probes_md"] = str(out_dir / "probes.md")
    if links:
        (out_dir / "link.md").write_text(link_markdown(entries, links))
        figures["link_md"] = str(out_dir / "link.md")
    if links and any(c != "ideal" for c in config.channels):
        # Group by topology when checkpoints name one, else draw one line per encoder.
        by_topology = any(e.topology != "default" for e in entries)
        groups: dict[str, list[list[dict[str, Any]]]] = {}
        for entry in entries:
            groups.setdefault(entry.topology if by_topology else entry.label, []).append(links[entry.label]["channels"])
        figures["channel_curves"] = str(out_dir / "channel_curves.png")
        save_channel_curves(figures["channel_curves"], groups, f"semantic link on {config.dataset} test images")

    summary = {
        "config": dataclasses.asdict(config),
        "encoders": [
            {**{k: str(v) for k, v in dataclasses.asdict(e).items()}, "probes": probe_rows.get(e.label), "link": links.get(e.label)}
            for e in entries
        ],
        "datasets_missing": data.missing,
        "figures": figures,
        "seconds": time.perf_counter() - start,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    log(f"wrote {out_dir} in {summary['seconds']:.0f} s")
    return summary
