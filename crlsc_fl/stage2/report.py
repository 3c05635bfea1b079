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

One encoder's evaluation is :mod:`crlsc_fl.stage2.evaluate`, the settings
:mod:`crlsc_fl.stage2.report_config`. Everything runs on ``accelerator`` (``--accelerator``: ``cpu``, ``cuda`` or ``auto``; see
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from crlsc_fl.accelerator import resolve_device
from crlsc_fl.data.datasets import DatasetNotFoundError
from crlsc_fl.data.paths import state_root
from crlsc_fl.stage2.encoder_store import EncoderStore
from crlsc_fl.stage2.evaluate import EncoderEntry, EncoderJob, ReportData, evaluate_encoder
from crlsc_fl.stage2.features import load_frozen_encoder
from crlsc_fl.stage2.figures import save_channel_curves, save_paired_differences
from crlsc_fl.stage2.paired import REFERENCE_TOPOLOGY, DeviceMetrics, check_pairing, encoder_values, paired_markdown, paired_statistics, table_metrics
from crlsc_fl.stage2.report_config import ReportConfig
from crlsc_fl.stage2.workers import ItemFailed, run_all

__all__ = ["EncoderEntry", "ReportConfig", "discover_encoders", "make_report", "run_encoder_files"]


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
    entries: Sequence[EncoderEntry], out: str | os.PathLike[str], config: ReportConfig | None = None,
    log: Callable[[str], None] = print, jobs: int = 1, threads: int = 1,
) -> dict[str, Any]:
    """Evaluate every encoder (``jobs`` worker processes of ``threads`` torch threads; those
    finished in an earlier call on ``out`` are reused), then write the tables, the figures
    and ``summary.json``. ``config``: default ``ReportConfig()``."""
    config = config or ReportConfig()
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
    data = ReportData()
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
        label = err.item.entry.label if isinstance(err.item, EncoderJob) else err.item
        raise RuntimeError(
            f"stage 2 stopped: encoder {label} failed ({err}); {done} finished encoders are kept in "
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
    entries: Sequence[EncoderEntry], results: Sequence[dict[str, Any]], data: ReportData, config: ReportConfig, out_dir: Path
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
