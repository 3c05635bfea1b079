"""Per-topology figures of one or several runs (matplotlib, written as PNG).

- ``accuracy_vs_round.png``: mean device kNN top-1 per round, one line per topology,
  shaded +-1 std across devices.
- ``accuracy_by_arch.png``: last-round kNN top-1 by encoder size, grouped by topology.
- ``accuracy_vs_bytes.png``: last-round kNN top-1 against bytes communicated per device.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from crlsc_fl.federation.results import summarize

ARCH_ORDER = ("resnet18", "resnet34", "resnet50")


def plot_runs(runs: dict[str, list[dict[str, Any]]], out_dir: Path, stage2: dict[str, Any] | None = None) -> list[Path]:
    """``runs`` maps a label prefix ('' for a single run) to its metric rows; ``stage2`` is a
    :func:`summarize_stage2` result, drawn as ``stage2_psnr.png`` when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    series: dict[str, list[dict[str, Any]]] = {}
    for prefix, rows in runs.items():
        for row in rows:
            if "error" not in row:
                series.setdefault(f"{prefix}{row['topology']}", []).append(row)
    paths = []

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, rows in series.items():
        by_round: dict[int, list[float]] = defaultdict(list)
        for r in rows:
            by_round[r["round"]].append(r["knn_top1"])
        rounds = sorted(by_round)
        mean = np.array([np.mean(by_round[k]) for k in rounds])
        std = np.array([np.std(by_round[k]) for k in rounds])
        ax.plot(rounds, mean, marker="o", label=label)
        ax.fill_between(rounds, mean - std, mean + std, alpha=0.15)
    ax.set_xlabel("round")
    ax.set_ylabel("device kNN top-1 (%)")
    ax.set_title("Accuracy per round (mean +- std over devices)")
    ax.legend(fontsize=8)
    paths.append(_save(fig, out_dir / "accuracy_vs_round.png"))

    summaries = {label: summarize(rows)[rows[0]["topology"]] for label, rows in series.items()}
    fig, ax = plt.subplots(figsize=(8, 4.5))
    archs = [a for a in ARCH_ORDER if any(a in s["knn_top1_by_arch"] for s in summaries.values())]
    width = 0.8 / max(len(archs), 1)
    x = np.arange(len(summaries))
    for i, arch in enumerate(archs):
        means = [s["knn_top1_by_arch"].get(arch, {}).get("mean", np.nan) for s in summaries.values()]
        stds = [s["knn_top1_by_arch"].get(arch, {}).get("std", 0) for s in summaries.values()]
        bars = ax.bar(x + (i - (len(archs) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=arch)
        ax.bar_label(bars, fmt="%.1f", fontsize=6)
    ax.set_xticks(x, list(summaries), rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("last-round kNN top-1 (%)")
    ax.set_title("Accuracy by encoder size")
    ax.legend(fontsize=8)
    paths.append(_save(fig, out_dir / "accuracy_by_arch.png"))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, s in summaries.items():
        bytes_mean = max(s["bytes_per_device"]["mean"], 1.0)  # log axis: 0 bytes drawn at 1
        ax.errorbar(bytes_mean, s["knn_top1"]["mean"], yerr=s["knn_top1"]["std"], fmt="o", capsize=3)
        ax.annotate(label, (bytes_mean, s["knn_top1"]["mean"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("bytes communicated per device (received + sent; 'local' = 0 drawn at 1)")
    ax.set_ylabel("last-round kNN top-1 (%)")
    ax.set_title("Accuracy vs communication")
    paths.append(_save(fig, out_dir / "accuracy_vs_bytes.png"))

    if stage2:
        fig, axes = plt.subplots(1, 2, figsize=(9, 4))
        names = list(stage2)
        for ax, key, unit in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ssim", "SSIM")):
            bars = ax.bar(names, [stage2[n][key]["mean"] for n in names], yerr=[stage2[n][key]["std"] for n in names], capsize=3)
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
            ax.set_ylabel(unit)
            ax.tick_params(axis="x", rotation=20)
        first = stage2[names[0]]
        fig.suptitle(f"Stage 2: VQ-VAE reconstruction over {first['channel']} ({first['bits_per_image']:.0f} bits/image)")
        paths.append(_save(fig, out_dir / "stage2_psnr.png"))
    return paths


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
