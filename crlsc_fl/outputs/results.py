"""Reading and summarising a run's results directory (written by
:class:`crlsc_fl.outputs.run_dir.RunDirectory`, which lists its files): the metric lines,
per topology the device kNN statistics of the last round and of every round, overall and by
architecture, seconds per round, the stage-2 decoders, CPU use. ``summary.json`` is put
together from these by :class:`crlsc_fl.outputs.report.RunReport`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from crlsc_fl.eval.statistics import describe


def read_metrics(run_dir: Path, name: str = "metrics.jsonl") -> list[dict[str, Any]]:
    path = Path(run_dir) / name
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a crlsc_fl run directory?")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarize_stage2(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per topology: mean/spread of the stage-2 PSNR and SSIM, and bits per image."""
    out: dict[str, Any] = {}
    for topology in sorted({r["topology"] for r in rows}):
        good = [r for r in rows if r["topology"] == topology and "error" not in r]
        if good:
            out[topology] = {
                "devices": len(good), "channel": good[0]["channel"],
                "psnr": describe([r["psnr"] for r in good]), "ssim": describe([r["ssim"] for r in good]),
                "lowlight_psnr": describe([r["lowlight_psnr"] for r in good]),
                "bits_per_image": float(good[0]["bits_per_image"]),
            }
    return out


def _by_round(rows: list[dict[str, Any]], key: str = "knn_top1") -> dict[str, Any]:
    """Per round (keys as strings): statistics of ``key`` over devices, and per architecture."""
    rounds = sorted({r["round"] for r in rows})
    overall = {str(k): describe([r[key] for r in rows if r["round"] == k]) for k in rounds}
    by_arch = {
        str(k): {a: describe([r[key] for r in rows if r["round"] == k and r["arch"] == a])
                 for a in sorted({r["arch"] for r in rows if r["round"] == k})}
        for k in rounds
    }
    return {"overall": overall, "by_arch": by_arch}


def _architectures(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per architecture: devices, width, parameters and FLOPs per image of its encoders."""
    out = {}
    for arch in sorted({r["arch"] for r in rows}):
        mine = [r for r in rows if r["arch"] == arch]
        entry: dict[str, float] = {"devices": len({r["device"] for r in mine})}
        for key in ("width", "parameters", "flops_per_image"):
            if key in mine[0]:
                entry[key] = mine[0][key]
        out[arch] = entry
    return out


def _device_rounds_by_node(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many of ``rows`` (device-rounds) each ``node`` ran; rows without one (older runs) are left out."""
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        if "node" in row:
            counts[str(row["node"])] += 1
    return dict(sorted(counts.items()))


REFERENCE_TOPOLOGY = "local"


def _paired_difference(rows: list[dict[str, Any]], reference: list[dict[str, Any]], round: int | None = None,
                       arch: str | None = None) -> dict[str, float] | None:
    """Statistics over devices of (kNN top-1 here - kNN top-1 under the reference topology)
    at ``round`` (default: the last round both reached), for the devices (of ``arch``, if
    given) that succeeded in both. A device has the same shard, architecture and initial
    weights under every topology, so the paired difference isolates what the topology did;
    its CI is far narrower than the gap between two unpaired means."""
    last = round or min(max(r["round"] for r in rows), max(r["round"] for r in reference))
    mine = {r["device"]: r["knn_top1"] for r in rows if r["round"] == last and arch in (None, r["arch"])}
    theirs = {r["device"]: r["knn_top1"] for r in reference if r["round"] == last}
    common = sorted(set(mine) & set(theirs))
    if not common:
        return None
    return {"round": last, **describe([mine[d] - theirs[d] for d in common])}


def _paired_by_round(rows: list[dict[str, Any]], reference: list[dict[str, Any]]) -> dict[str, Any]:
    """The paired difference at every round both reached, overall and per architecture."""
    overall, by_arch = {}, {}
    for k in sorted({r["round"] for r in rows} & {r["round"] for r in reference}):
        if (paired := _paired_difference(rows, reference, round=k)) is not None:
            overall[str(k)] = paired
        by_arch[str(k)] = {a: d for a in sorted({r["arch"] for r in rows if r["round"] == k})
                           if (d := _paired_difference(rows, reference, round=k, arch=a)) is not None}
    return {"overall": overall, "by_arch": by_arch}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per topology: last-round kNN accuracy (mean, std, 95% CI over devices, per
    architecture), the same for every round, the paired per-device difference to ``local``,
    the encoders' sizes, bytes per device."""
    by_topology: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_topology[row["topology"]].append(row)
    summary: dict[str, Any] = {}
    for topology, items in by_topology.items():
        good = [r for r in items if "error" not in r]
        errors_by_round = {str(k): sum(1 for r in items if r["round"] == k and "error" in r) for k in sorted({r["round"] for r in items})}
        if not good:
            summary[topology] = {"errors": len(items), "errors_by_round": errors_by_round}
            continue
        last = max(r["round"] for r in good)
        final = [r for r in good if r["round"] == last]
        per_device_bytes: dict[int, float] = defaultdict(float)
        for r in good:
            per_device_bytes[r["device"]] += r.get("bytes_received", 0) + r.get("bytes_sent", 0)
        archs = sorted({r["arch"] for r in final})
        per_round = _by_round(good)
        summary[topology] = {
            "rounds": last,
            "devices": len(final),
            "errors": len(items) - len(good),
            "errors_by_round": errors_by_round,
            "knn_top1": describe([r["knn_top1"] for r in final]),
            "knn_top5": describe([r["knn_top5"] for r in final]),
            "knn_top1_by_arch": {a: describe([r["knn_top1"] for r in final if r["arch"] == a]) for a in archs},
            "architectures": _architectures(good),
            "bytes_per_device": describe(list(per_device_bytes.values())),
            "knn_top1_by_round": per_round["overall"],
            "knn_top1_by_arch_by_round": per_round["by_arch"],
            "train_seconds_per_device_round": float(np.mean([r["train_seconds"] for r in good])),
            "device_rounds_by_node": _device_rounds_by_node(good),
        }
    reference = [r for r in by_topology.get(REFERENCE_TOPOLOGY, []) if "error" not in r]
    for topology, items in by_topology.items():
        good = [r for r in items if "error" not in r]
        if topology != REFERENCE_TOPOLOGY and reference and good:
            paired = _paired_difference(good, reference)
            if paired is not None:
                summary[topology][f"knn_top1_minus_{REFERENCE_TOPOLOGY}"] = paired
                by_round = _paired_by_round(good, reference)
                summary[topology][f"knn_top1_minus_{REFERENCE_TOPOLOGY}_by_round"] = by_round["overall"]
                summary[topology][f"knn_top1_minus_{REFERENCE_TOPOLOGY}_by_arch_by_round"] = by_round["by_arch"]
    return summary


def seconds_per_round(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per topology, the wall time of each round (``rounds.jsonl``; a round redone after a
    resume counts with its last run)."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for row in rows:
        out[str(row["label"]).split("/", 1)[-1]][str(row["round"])] = float(row["wall_seconds"])
    return dict(out)


def cpu_use(rows: list[dict[str, Any]], wall_seconds: float, cores: int | None = None) -> dict[str, float]:
    """How busy the run kept the machine: the devices' own seconds (every device-round from
    loading its state to saving it, measured on the device) over wall seconds x cores (the
    Ray cluster's CPUs in a simulation, :func:`~crlsc_fl.device.placement.ray_cluster_cpus`,
    else this machine's). What is missing to 1.0 is the server, Flower and Ray, and idle cores."""
    cores = cores or psutil.cpu_count() or 1
    device_seconds = float(sum(r.get("device_seconds", 0.0) for r in rows if "error" not in r))
    return {"device_seconds": device_seconds, "wall_seconds": wall_seconds, "cores": float(cores),
            "fraction": device_seconds / (wall_seconds * cores) if wall_seconds > 0 else 0.0}
