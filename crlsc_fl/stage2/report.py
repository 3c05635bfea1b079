"""Stage-2 report for finished runs or saved encoders (paper sec. 4.2-4.3).

For every encoder: probes (linear and 3-layer MLP, top-1 / top-5) on each probe dataset
that can be loaded, then the semantic link (train codebook + decoder, sweep AWGN / Rayleigh
SNR and BSC bit-error rate, low-light test). Writes to ``out``:

- ``encoders/<encoder>.json``: one encoder's results and timings, written as soon as it is
  done; a re-run on the same ``out`` reuses them (:mod:`crlsc_fl.stage2.encoder_store`);
- ``paired.md``, ``paired_differences.png``: per topology and metric the mean over devices
  and the per-device difference to ``local`` with 95% t-intervals (:mod:`crlsc_fl.stage2.paired`);
- ``probes.json``, ``probes.md``: the probe table (datasets that could not be loaded are
  listed with the reason);
- ``link.md``: per encoder, bits per image against PNG / JPEG, ideal-channel and low-light
  PSNR / SSIM;
- ``channel_curves.png``: PSNR / SSIM vs SNR and bit-error rate, per topology (or encoder);
- ``reconstruction-<encoder>.png``: normal and low-light reconstruction grids side by side,
  and ``degradation-<encoder>.png``: the same images decoded at falling AWGN SNR, for the
  first ``figure_devices`` devices of each topology;
- ``summary.json``: every number above, the ``paired`` section, the configuration, the
  figure paths and where the time went (``timing``).

Everything runs on ``accelerator`` (``--accelerator``: ``cpu``, ``cuda`` or ``auto``; see
:mod:`crlsc_fl.accelerator`). Encoders are evaluated in ``jobs`` worker processes
(:mod:`crlsc_fl.stage2.workers`) after every encoder file, dataset and setting has been
checked. Encoders come from ``--encoder`` files or from a run's device state
(:func:`run_encoder_files`); the topology comes from the ``topology`` field saved with
``save_encoder(..., topology=...)``, else the run directory's name, else ``"default"``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crlsc_fl.accelerator import ACCELERATORS, module_device, resolve_device
from crlsc_fl.data.datasets import DatasetNotFoundError, ImageDataset, load_dataset
from crlsc_fl.models.encoders import LocalEncoder
from crlsc_fl.stage2.channels import Channel, IdealChannel, build_channel
from crlsc_fl.stage2.encoder_store import EncoderStore
from crlsc_fl.stage2.features import as_image_tensor, cached_features, load_frozen_encoder
from crlsc_fl.stage2.figures import (
    reconstruction_grid,
    save_channel_curves,
    save_degradation_figure,
    save_paired_differences,
    save_reconstruction_figure,
)
from crlsc_fl.stage2.link import LinkConfig, evaluate_link, reconstruct, train_decoder
from crlsc_fl.stage2.lowlight import DEFAULT_BRIGHTNESS, DEFAULT_GAMMA, darken
from crlsc_fl.stage2.paired import REFERENCE_TOPOLOGY, DeviceMetrics, check_pairing, encoder_values, paired_markdown, paired_statistics, table_metrics
from crlsc_fl.stage2.probes import PROBES, ProbeConfig, train_probe
from crlsc_fl.stage2.workers import ItemFailed, run_all

# A channel point decodes the test images the channel changed (~1.2 CPU-s per 1,000), so the
# sweep is sized for the 50 encoders of the main run: AWGN and Rayleigh at 6 SNRs, BSC at 5
# bit-error rates (measured: 12.5 CPU-s per encoder for these 18 points, a third of its time).
DEFAULT_SNR_DB = (-10.0, -5.0, 0.0, 5.0, 10.0, 20.0)
DEFAULT_BER = (1e-3, 1e-2, 0.05, 0.2, 0.5)
# BPSK bit-error rates 0.21, 0.079, 0.006; from ~10 dB on (BER 4e-6) the 32 bits of an image
# arrive intact and the PSNR is the ideal channel's
DEFAULT_TABLE_SNR_DB = (-5.0, 0.0, 5.0)
DEGRADATION_SNR_DB = (10.0, 3.0, 0.0, -5.0)


@dataclass(frozen=True)
class EncoderEntry:
    """One encoder to report on."""

    label: str  # unique, file-name safe
    path: Path
    topology: str
    device: str
    arch: str = ""


@dataclass(frozen=True)
class ReportConfig:
    dataset: str = "cifar10"  # reconstruction data (the paper uses Animal / CelebA, not available offline)
    probe_datasets: tuple[str, ...] = ("cifar10", "cifar100", "stl10")
    probes: tuple[str, ...] = ("linear", "mlp")
    data_dir: str | None = None
    download: bool = True  # try torchvision downloads for datasets not on disk
    train_samples: int = 2000
    test_samples: int = 1000
    probe_layer: str = "layer4"
    link: LinkConfig = LinkConfig(epochs=5)  # 5 epochs on 2,000 images: ~21 CPU-s per encoder, half its time
    probe: ProbeConfig = ProbeConfig()
    channels: tuple[str, ...] = ("awgn", "rayleigh", "bsc")
    snr_db: tuple[float, ...] = DEFAULT_SNR_DB
    ber: tuple[float, ...] = DEFAULT_BER
    table_snr_db: tuple[float, ...] = DEFAULT_TABLE_SNR_DB  # AWGN SNRs of the paired table (swept too)
    gamma: float = DEFAULT_GAMMA
    brightness: float = DEFAULT_BRIGHTNESS
    grid_columns: int = 8
    grid_pairs: int = 4
    figure_devices: int = 1  # reconstruction / degradation figures for this many devices per topology
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
        if self.figure_devices < 0:
            raise ValueError(f"figure_devices={self.figure_devices!r} out of range [0, inf)")
        for probe in self.probes:
            PROBES.get(probe)
        self.sweep()  # every channel and value checked before any work starts
        darken(np.zeros((1, 1, 1, 3), np.uint8), self.gamma, self.brightness)

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


def _checkpoint_info(path: Path) -> tuple[dict[str, Any], str]:
    """The ``extra`` fields and the architecture saved with an encoder ({} and "" when unreadable)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        extra, arch = checkpoint.get("extra", {}), str(checkpoint.get("spec", {}).get("arch", ""))
    except Exception:  # load_frozen_encoder reports unreadable files with the full reason
        return {}, ""
    return (extra if isinstance(extra, dict) else {}), arch


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "encoder"


def run_encoder_files(run_dir: Path, state_dir: str | os.PathLike[str] | None = None, device_ids: Sequence[int] = ()) -> list[Path]:
    """The device encoders of a finished federated run, from device-local storage.

    A run directory's ``config.json`` names the run id; its devices saved their encoders
    under ``<state root>/<run id>/<topology>/device-<id>/encoder.pt`` (state root: ``state_dir``,
    else ``$CRLSC_STATE_DIR``, else the cache; see :mod:`crlsc_fl.device.device_store`).
    """
    from crlsc_fl.device.device_store import state_root

    config_file = run_dir / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: is {run_dir} a run directory of crlsc_fl.launch?")
    run_config = json.loads(config_file.read_text())
    run_id = run_config["run_id"]
    topologies = [t for t in str(run_config.get("scenario", {}).get("scenario.topologies", "")).split(",") if t]
    root = Path(state_dir).expanduser().resolve() if state_dir else state_root()

    def run_order(file: Path) -> tuple[int, str, int]:  # the run's topology order, then device ids as numbers
        topology = file.parent.parent.name
        return (topologies.index(topology) if topology in topologies else len(topologies), topology, int(file.parent.name.split("-")[1]))

    files = sorted(
        (f for f in (root / str(run_id)).glob("*/device-*/encoder.pt") if not device_ids or int(f.parent.name.split("-")[1]) in device_ids),
        key=run_order,
    )
    if not files:
        raise FileNotFoundError(
            f"no device encoders of run {run_id} under {root / str(run_id)} (devices {list(device_ids) or 'all'}); a run "
            "removes each topology's device state once it is done, except the encoders of scenario.keep-devices sampled devices "
            "(or all of it with scenario.keep-device-state = true); with --state-dir, name the state root the run used"
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
        extra, arch = _checkpoint_info(path)
        device = str(extra.get("device", path.parent.name if run_name else path.stem))
        topology = str(extra.get("topology", run_name or "default"))
        label = _safe(f"{run_name}-device-{device}" if run_name else device)
        while label in labels:  # two files with one name: keep labels unique
            label += "_"
        labels.add(label)
        entries.append(EncoderEntry(label, path, topology, device, arch))
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
    encoder: LocalEncoder, data: _Data, config: ReportConfig, log: Callable[[str], None],
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
    entry: EncoderEntry, encoder: LocalEncoder, data: _Data, config: ReportConfig, out: Path, log: Callable[[str], None],
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
    job: EncoderJob, data: _Data, config: ReportConfig, out: Path, store: EncoderStore, log: Callable[[str], None] | None = None
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


def _figure_labels(entries: Sequence[EncoderEntry], per_topology: int) -> set[str]:
    """The first ``per_topology`` devices (by id) of each topology: the same devices in every
    topology of a run, so their figures compare."""
    by_topology: dict[str, list[EncoderEntry]] = {}
    for entry in entries:
        by_topology.setdefault(entry.topology, []).append(entry)
    return {
        e.label for group in by_topology.values()
        for e in sorted(group, key=lambda e: (0, int(e.device), "") if e.device.isdigit() else (1, 0, e.device))[:per_topology]
    }


def _timing(results: Sequence[dict[str, Any]], evaluated: set[str], wall: float, jobs: int, threads: int) -> dict[str, Any]:
    """Where the time went: per phase, seconds summed over every encoder (wall and CPU)."""
    phases: dict[str, dict[str, float]] = {}
    for result in results:
        for name, spent in result.get("phases", {}).items():
            total = phases.setdefault(name, {"seconds": 0.0, "cpu_seconds": 0.0})
            total["seconds"] += spent["seconds"]
            total["cpu_seconds"] += spent["cpu_seconds"]
    mine = [r for r in results if r["entry"]["label"] in evaluated]
    return {
        "wall_seconds": wall, "jobs": jobs, "threads": threads,
        "evaluated": len(mine), "reused": len(results) - len(mine),
        "encoder_seconds": sum(r["seconds"] for r in results),
        "encoder_cpu_seconds": sum(r["cpu_seconds"] for r in results),
        "phases": phases,
    }


def make_report(
    entries: Sequence[EncoderEntry], out: str | os.PathLike[str], config: ReportConfig = ReportConfig(),
    log: Callable[[str], None] = print, jobs: int = 1, threads: int = 1,
) -> dict[str, Any]:
    """Evaluate every encoder (``jobs`` worker processes of ``threads`` torch threads; those
    finished in an earlier call on ``out`` are reused), then write the tables, the figures
    and ``summary.json``."""
    if jobs < 1 or threads < 1:
        raise ValueError(f"--jobs={jobs} and --threads={threads} must be at least 1")
    if not entries:
        raise ValueError("no encoders to report on")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # Everything is checked before minutes of work: the accelerator, every encoder file, the
    # pairing of devices across topologies, the datasets.
    resolve_device(config.accelerator, key="--accelerator")
    for entry in entries:
        load_frozen_encoder(entry.path, arch=config.arch, stem=config.stem)
    if any(e.topology == REFERENCE_TOPOLOGY for e in entries):
        check_pairing([(e.topology, e.device, e.arch) for e in entries])
    data = _Data()
    for name in ([] if config.skip_link else [config.dataset]) + ([] if config.skip_probes else list(config.probe_datasets)):
        data.get(name, config)
    if not config.skip_link and config.dataset in data.missing:
        raise DatasetNotFoundError(data.missing[config.dataset])

    store = EncoderStore(out_dir, config.settings())
    figure_labels = _figure_labels(entries, config.figure_devices)
    results: dict[str, dict[str, Any]] = {}
    todo: list[EncoderJob] = []
    for entry in entries:
        job = EncoderJob(entry, store.key(entry.path), entry.label in figure_labels)
        result, why = store.finished(entry.label, job.key, job.figures)
        if result is not None:
            results[entry.label] = result
        else:
            todo.append(job)
            if why != "not done":
                log(f"[{entry.label}] evaluated again: {why}")
    log(f"{len(entries)} encoders: {len(results)} already done in {store.folder}, {len(todo)} to evaluate "
        f"in {min(jobs, max(1, len(todo)))} process(es) of {threads} thread(s)")

    def finished(job: EncoderJob, result: dict[str, Any]) -> None:
        results[job.entry.label] = result
        log(f"{len(results)}/{len(entries)} encoders done ({time.perf_counter() - start:.0f} s)")

    task = functools.partial(evaluate_encoder, data=data, config=config, out=out_dir, store=store, log=log if jobs == 1 else None)
    try:
        run_all(task, todo, jobs, threads, on_result=finished)
    except ItemFailed as err:
        done = len(list(store.folder.glob("*.json")))
        raise RuntimeError(
            f"stage 2 stopped: encoder {err.item.entry.label} failed ({err}); {done} finished encoders are kept in "
            f"{store.folder}, and running the same command again continues from them"
        ) from err.error
    ordered = [results[e.label] for e in entries]
    summary = _write_outputs(entries, ordered, data, config, out_dir)
    summary["seconds"] = time.perf_counter() - start
    summary["timing"] = _timing(ordered, {j.entry.label for j in todo}, summary["seconds"], jobs, threads)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    log(f"wrote {out_dir} in {summary['seconds']:.0f} s")
    return summary


def _write_outputs(
    entries: Sequence[EncoderEntry], results: Sequence[dict[str, Any]], data: _Data, config: ReportConfig, out_dir: Path
) -> dict[str, Any]:
    """The tables and figures over all encoders; the summary without its timing."""
    probe_rows = {e.label: r["probes"] for e, r in zip(entries, results) if r["probes"] is not None}
    links = {e.label: r["link"] for e, r in zip(entries, results) if r["link"] is not None}
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

    paired = None
    if any(e.topology == REFERENCE_TOPOLOGY for e in entries):
        metrics = table_metrics(
            [] if config.skip_probes else config.probe_datasets, config.probes, not config.skip_link,
            config.table_snr_db if "awgn" in config.channels else (),
        )
        devices = [DeviceMetrics(e.topology, e.device, e.arch, encoder_values(r["probes"], r["link"])) for e, r in zip(entries, results)]
        paired = paired_statistics(devices, metrics, REFERENCE_TOPOLOGY)
        (out_dir / "paired.md").write_text(paired_markdown(paired))
        figures["paired_md"] = str(out_dir / "paired.md")
        if len(paired["topologies"]) > 1 and paired["metrics"]:
            figures["paired_differences"] = str(out_dir / "paired_differences.png")
            save_paired_differences(figures["paired_differences"], paired, f"stage 2, per device minus its {REFERENCE_TOPOLOGY} encoder")
    for entry, result in zip(entries, results):
        for name, path in ((result.get("link") or {}).get("figures") or {}).items():
            figures[f"{name}-{entry.label}"] = str(out_dir / Path(path).name)
    return {
        "config": dataclasses.asdict(config),
        "encoders": [
            {**{k: str(v) for k, v in dataclasses.asdict(e).items()}, "probes": r["probes"], "link": r["link"],
             "seconds": r["seconds"], "cpu_seconds": r["cpu_seconds"], "phases": r["phases"]}
            for e, r in zip(entries, results)
        ],
        "paired": paired,
        "datasets_missing": data.missing,
        "figures": figures,
    }
