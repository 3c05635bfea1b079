"""The stage-2 evaluation of one encoder: probes on its pooled features and the semantic
link (train codebook + decoder, sweep the channels, low-light test, figures).

:func:`evaluate_encoder` is the task a report's worker processes run
(:mod:`crlsc_fl.stage2.workers`), one encoder at a time; the datasets are loaded once
(:class:`ReportData`) and shared. The report around it (which encoders, stored results,
tables, figures over all encoders) is :mod:`crlsc_fl.stage2.report`.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crlsc_fl.accelerator import module_device, resolve_device
from crlsc_fl.data.datasets import DatasetNotFoundError, ImageDataset, load_dataset
from crlsc_fl.models.encoders import LocalEncoder
from crlsc_fl.stage2.channels import IdealChannel, build_channel
from crlsc_fl.stage2.encoder_store import EncoderStore
from crlsc_fl.stage2.features import as_image_tensor, cached_features, load_frozen_encoder
from crlsc_fl.stage2.figures import reconstruction_grid, save_degradation_figure, save_reconstruction_figure
from crlsc_fl.stage2.link import evaluate_link, reconstruct, train_decoder
from crlsc_fl.stage2.lowlight import darken
from crlsc_fl.stage2.probes import train_probe
from crlsc_fl.stage2.report_config import ReportConfig

DEGRADATION_SNR_DB = (10.0, 3.0, 0.0, -5.0)


@dataclass(frozen=True)
class EncoderEntry:
    """One encoder to report on."""

    label: str  # unique, file-name safe
    path: Path
    topology: str
    device: str
    arch: str = ""


def _sample(dataset: ImageDataset, count: int, seed: int) -> ImageDataset:
    """A random subset in random order (the offline CIFAR-10 rows are grouped by class, so
    neither the head nor a sorted subset would show every class in the figures)."""
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(dataset), size=min(count, len(dataset)), replace=False)
    return ImageDataset(dataset.name, np.asarray(dataset.images[picked]), dataset.labels[picked], dataset.class_names)


@dataclass
class ReportData:
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


@contextmanager
def _timed(phases: dict[str, dict[str, float]], name: str) -> Iterator[None]:
    """Add the wall and CPU seconds of the block to ``phases[name]`` (CPU: this process's
    threads; on a busy machine wall time grows, CPU time does not)."""
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        phase = phases.setdefault(name, {"seconds": 0.0, "cpu_seconds": 0.0})
        phase["seconds"] += time.perf_counter() - wall
        phase["cpu_seconds"] += time.process_time() - cpu


def run_probes(
    encoder: LocalEncoder, data: ReportData, config: ReportConfig, log: Callable[[str], None],
    phases: dict[str, dict[str, float]] | None = None,
) -> list[dict[str, Any]]:
    phases = {} if phases is None else phases
    rows: list[dict[str, Any]] = []
    for name in config.probe_datasets:
        splits = data.get(name, config)
        if splits is None:
            rows.append({"dataset": name, "skipped": data.missing[name]})
            continue
        train, test = splits
        with _timed(phases, "probe_features"):
            tx = cached_features(encoder, train.images, name, "train", config.probe_layer)
            vx = cached_features(encoder, test.images, name, "test", config.probe_layer)
        for probe in config.probes:
            with _timed(phases, "probe_training"):
                result = train_probe(probe, tx, train.labels, vx, test.labels, len(train.class_names), config.probe,
                                     device=module_device(encoder))
            rows.append({"dataset": name, **dataclasses.asdict(result)})
            log(f"probe {probe} on {name}: top-1 {100 * result.top1:.1f}%, top-5 {100 * result.top5:.1f}%")
    return rows


def run_link(
    entry: EncoderEntry, encoder: LocalEncoder, data: ReportData, config: ReportConfig, out: Path, log: Callable[[str], None],
    figures: bool = True, phases: dict[str, dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Train the link on the training images, sweep the channels on the test images, test
    low light; ``figures``: also draw the reconstruction and degradation grids."""
    phases = {} if phases is None else phases
    splits = data.get(config.dataset, config)
    if splits is None:
        raise DatasetNotFoundError(data.missing[config.dataset])
    train, test = splits
    with _timed(phases, "decoder_training"):
        trained = train_decoder(encoder, train.images, config.link)
    link = trained.link
    with _timed(phases, "channel_sweep"):
        normal = evaluate_link(link, test.images, config.sweep(), seed=config.seed)
    with _timed(phases, "lowlight"):
        dark_images = darken(test.images, config.gamma, config.brightness)
        dark = evaluate_link(link, dark_images, [IdealChannel()], seed=config.seed)[0]
        dark_vs_original = evaluate_link(link, dark_images, [IdealChannel()], seed=config.seed, targets=test.images)[0]
    ideal, mse = normal[0], trained.history["reconstruction_mse"]
    log(f"link: {ideal['bits_per_image']:.0f} bits/image, decoder training mse {mse[0] if mse else float('nan'):.4f} -> "
        f"{mse[-1] if mse else float('nan'):.4f} in {trained.seconds:.0f} s, ideal PSNR {ideal['psnr']:.2f} dB, SSIM {ideal['ssim']:.3f}; "
        f"low-light PSNR {dark['psnr']:.2f} dB")
    result = {
        "bits_per_image": link.bits_per_image,
        "train_history": trained.history,
        "train_seconds": trained.seconds,
        "channels": normal,
        "lowlight": {"vs_darkened_input": dark, "vs_original": dark_vs_original, "gamma": config.gamma, "brightness": config.brightness},
        "figures": {},
    }
    if figures:
        with _timed(phases, "figures"):
            result["figures"] = {k: str(v) for k, v in _link_figures(entry, link, test.images, dark_images, config, out).items()}
    return result


def _link_figures(
    entry: EncoderEntry, link: Any, images: np.ndarray, dark_images: np.ndarray, config: ReportConfig, out: Path
) -> dict[str, Path]:
    """``reconstruction-<label>.png`` (normal and low light) and ``degradation-<label>.png``."""
    shown = config.grid_columns * config.grid_pairs
    indices = link.encode(images[:shown])
    dark_indices = link.encode(dark_images[:shown])
    grids = {
        "normal": reconstruction_grid(images[:shown], reconstruct(link, indices)[0], config.grid_columns),
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
    originals = as_image_tensor(images[: config.grid_columns])
    save_degradation_figure(figures["degradation"], originals, decoded, f"{entry.label}: reconstructions vs channel SNR")
    return figures


@dataclass(frozen=True)
class EncoderJob:
    """One encoder to evaluate: its entry, the key its stored result gets, whether it draws figures."""

    entry: EncoderEntry
    key: str
    figures: bool


def evaluate_encoder(
    job: EncoderJob, data: ReportData, config: ReportConfig, out: Path, store: EncoderStore, log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Probes and link for one encoder, saved to ``store`` before returning (a worker's task).
    Progress lines start with the encoder's label; ``log`` (default: print) takes them."""
    entry = job.entry
    log = functools.partial(_log_line, entry.label, log or print)
    wall, cpu = time.perf_counter(), time.process_time()
    phases: dict[str, dict[str, float]] = {}
    encoder = load_frozen_encoder(entry.path, arch=config.arch, stem=config.stem,
                                  device=resolve_device(config.accelerator, key="--accelerator"))
    torch.manual_seed(config.seed)
    probes = None if config.skip_probes else run_probes(encoder, data, config, log, phases)
    link = None if config.skip_link else run_link(entry, encoder, data, config, out, log, job.figures, phases)
    result = {
        "key": job.key,
        "entry": {k: str(v) for k, v in dataclasses.asdict(entry).items()},
        "probes": probes,
        "link": link,
        "phases": phases,
        "seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
    }
    store.save(entry.label, result)
    log(f"done in {result['seconds']:.0f} s ({result['cpu_seconds']:.0f} CPU-s)")
    return result


def _log_line(label: str, log: Callable[..., None], message: str) -> None:
    if log is print:
        print(f"[{label}] {message}", flush=True)  # workers share the terminal: one whole line each
    else:
        log(f"[{label}] {message}")
