"""Stage-2 metrics paired per device against the ``local`` topology.

A run keeps the encoders of the same sampled devices under every topology
(``scenario.keep-devices``); a device has the same shard, architecture and initial weights
everywhere, so ``metric(device under topology) - metric(same device under local)`` isolates
what the topology did, and its spread over devices is far smaller than the spread of the
devices themselves (different shards and architectures). For every metric and topology this
module gives the mean over the topology's devices and the mean of those per-device
differences, both with a 95% Student-t interval over the devices (few devices: the t
quantile, not 1.96; :func:`crlsc_fl.eval.statistics.describe`), n = the devices present
under both topologies.

The metrics (:func:`table_metrics`): probe top-1 (%) per probe dataset and probe, the
link's PSNR (dB) over the ideal channel and over AWGN at ``table_snr_db``, and the low-light
PSNR (darkened images against the darkened input).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crlsc_fl.eval.statistics import describe

REFERENCE_TOPOLOGY = "local"
INTERVAL = "t"  # Student-t 95% interval of the mean over devices


@dataclass(frozen=True)
class Metric:
    """One column of the paired table."""

    key: str  # e.g. "cifar10/linear/top1", "psnr/awgn/10"
    label: str  # table header
    unit: str  # "%" or "dB"


@dataclass(frozen=True)
class DeviceMetrics:
    """The metrics of one encoder: one device under one topology."""

    topology: str
    device: str
    arch: str
    values: Mapping[str, float]


def table_metrics(
    probe_datasets: Sequence[str], probes: Sequence[str], link: bool, table_snr_db: Sequence[float]
) -> list[Metric]:
    """The table's metrics for a report configuration (probe datasets that could not be
    loaded are simply absent from every device and so from the table)."""
    names = {"linear": "linear", "mlp": "MLP"}
    metrics = [
        Metric(f"{dataset}/{probe}/top1", f"{names.get(probe, probe)} top-1 {dataset} (%)", "%")
        for dataset in probe_datasets for probe in probes
    ]
    if link:
        metrics.append(Metric("psnr/ideal", "ideal-channel PSNR (dB)", "dB"))
        metrics += [Metric(f"psnr/awgn/{snr:g}", f"AWGN {snr:g} dB PSNR (dB)", "dB") for snr in table_snr_db]
        metrics.append(Metric("psnr/lowlight", "low-light PSNR (dB)", "dB"))
    return metrics


def encoder_values(probes: Sequence[Mapping[str, Any]] | None, link: Mapping[str, Any] | None) -> dict[str, float]:
    """Every metric key :func:`table_metrics` can name, from one encoder's probe rows
    (:func:`crlsc_fl.stage2.evaluate.run_probes`) and link results (``run_link``)."""
    values: dict[str, float] = {}
    for row in probes or []:
        if "skipped" not in row:
            values[f"{row['dataset']}/{row['probe']}/top1"] = 100.0 * float(row["top1"])
    if link:
        for row in link["channels"]:
            if row["channel"] == "ideal":
                values["psnr/ideal"] = float(row["psnr"])
            elif row["channel"] == "awgn":
                values[f"psnr/awgn/{float(row['snr_db']):g}"] = float(row["psnr"])
        values["psnr/lowlight"] = float(link["lowlight"]["vs_darkened_input"]["psnr"])
    return values


def check_pairing(records: Sequence[tuple[str, str, str]]) -> None:
    """Fail before any work when (topology, device, arch) triples cannot be paired: a device
    twice under one topology (two runs mixed), or under two architectures (not one device)."""
    seen: dict[tuple[str, str], int] = defaultdict(int)
    archs: dict[str, dict[str, str]] = defaultdict(dict)
    for topology, device, arch in records:
        seen[(topology, device)] += 1
        archs[device][topology] = arch
    twice = sorted((topology, device, count) for (topology, device), count in seen.items() if count > 1)
    if twice:
        topology, device, count = twice[0]
        raise ValueError(
            f"device {device} has {count} encoders under topology {topology} ({len(twice)} such pairs); the paired table "
            "needs one encoder per device and topology: give one run directory, or choose devices with --device-ids"
        )
    for device, by_topology in sorted(archs.items()):
        if len(set(by_topology.values())) > 1:
            listed = ", ".join(f"{t}: {a}" for t, a in sorted(by_topology.items()))
            raise ValueError(f"device {device} has encoders of different architectures ({listed}): they are not one device of one run")


def paired_statistics(
    devices: Sequence[DeviceMetrics], metrics: Sequence[Metric], reference: str = REFERENCE_TOPOLOGY
) -> dict[str, Any]:
    """Per topology (``reference`` first, the others in the order of ``devices``) and metric: ``describe`` of the values over its
    devices, and, for the other topologies, ``minus_<reference>``: ``describe`` of the
    per-device differences to the reference (devices present in both; absent when none)."""
    by_topology: dict[str, dict[str, Mapping[str, float]]] = defaultdict(dict)
    archs: dict[str, str] = {}
    for d in devices:
        by_topology[d.topology][d.device] = d.values
        archs[d.device] = d.arch
    order = sorted(by_topology, key=lambda t: t != reference)  # the reference first, the others as given
    present = [m for m in metrics if any(m.key in values for per in by_topology.values() for values in per.values())]
    topologies: dict[str, Any] = {}
    for topology in order:
        mine = by_topology[topology]
        entry: dict[str, Any] = {"devices": sorted(mine, key=_device_order), "metrics": {}}
        for metric in present:
            values = {device: v[metric.key] for device, v in mine.items() if metric.key in v}
            if not values:
                continue
            stats: dict[str, Any] = {**describe(list(values.values()), INTERVAL)}
            theirs = {device: v[metric.key] for device, v in by_topology.get(reference, {}).items() if metric.key in v}
            common = sorted(set(values) & set(theirs), key=_device_order)
            if topology != reference and common:
                stats[f"minus_{reference}"] = {
                    **describe([values[d] - theirs[d] for d in common], INTERVAL), "devices": common,
                }
            entry["metrics"][metric.key] = stats
        topologies[topology] = entry
    return {
        "reference": reference,
        "interval": "95% Student-t interval of the mean over devices (ci95 = half-width; null for one device)",
        "metrics": [{"key": m.key, "label": m.label, "unit": m.unit} for m in present],
        "architectures": {device: archs[device] for device in sorted(archs, key=_device_order)},
        "topologies": topologies,
    }


def _device_order(device: str) -> tuple[int, int | str]:
    return (0, int(device)) if device.isdigit() else (1, device)


def _signed(stats: Mapping[str, Any], digits: int) -> str:
    ci = stats["ci95"]
    text = f"{stats['mean']:+.{digits}f}" + (f" ± {ci:.{digits}f}" if ci is not None else "")
    excludes_zero = ci is not None and abs(stats["mean"]) > ci
    return f"**{text}**" if excludes_zero else text


def paired_markdown(paired: Mapping[str, Any]) -> str:
    """The README's stage-2 table: a row per topology, a column per metric; each cell the
    mean over the topology's devices and, except for the reference, the paired difference
    to it (mean ± 95% t half-width; bold when the interval excludes 0)."""
    reference, metrics = paired["reference"], paired["metrics"]
    if not metrics:
        return "No metrics to pair.\n"
    header = "| topology | devices | " + " | ".join(m["label"] for m in metrics) + " |"
    lines = [header, "|---|---|" + "---|" * len(metrics)]
    for topology, entry in paired["topologies"].items():
        cells = []
        for m in metrics:
            stats = entry["metrics"].get(m["key"])
            if stats is None:
                cells.append("")
                continue
            digits = 1 if m["unit"] == "%" else 2
            cell = f"{stats['mean']:.{digits}f}"
            diff = stats.get(f"minus_{reference}")
            if diff is not None:
                cell += f" ({_signed(diff, digits)})"
            cells.append(cell)
        lines.append(f"| `{topology}` | {len(entry['devices'])} | " + " | ".join(cells) + " |")
    archs: defaultdict[str, int] = defaultdict(int)
    for arch in paired["architectures"].values():
        archs[arch] += 1
    lines += [
        "",
        f"Mean over each topology's devices; in brackets the mean per-device difference to the same device's "
        f"`{reference}` encoder ± the half-width of its 95% Student-t interval (n = devices present under both; bold: "
        f"the interval excludes 0). Devices: {', '.join(f'{n} {a}' for a, n in sorted(archs.items()))}.",
    ]
    return "\n".join(lines) + "\n"
