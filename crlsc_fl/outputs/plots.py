"""Per-topology figures of one or several runs (matplotlib, written as PNG).

- ``accuracy_vs_round.png``: mean device kNN top-1 per round, one line per topology,
  shaded with the 95% confidence interval of the mean over devices.
- ``accuracy_vs_round_by_arch.png``: the same, one panel per encoder architecture.
- ``paired_difference_vs_round.png``: per round, the mean per-device difference of kNN
  top-1 to the same device under ``local`` (shaded 95% CI), all devices and per
  architecture: what each topology adds, with the spread of shards taken out.
- ``accuracy_by_arch.png``: last-round kNN top-1 by encoder size, grouped by topology
  (error bars: 95% CI).
- ``accuracy_vs_bytes.png``: last-round kNN top-1 (95% CI) against bytes communicated per
  device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crlsc_fl.models.encoders import ENCODERS
from crlsc_fl.outputs.results import summarize


def plot_runs(runs: dict[str, list[dict[str, Any]]], out_dir: Path, stage2: dict[str, Any] | None = None) -> list[Path]:
    """``runs`` maps a label prefix ('' for a single run) to its metric rows; ``stage2`` is a
    :func:`summarize_stage2` result, drawn as ``stage2_psnr.png`` when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    summaries: dict[str, dict[str, Any]] = {}
    for prefix, rows in runs.items():  # one run at a time: its paired differences are to its own local
        for topology, summary in summarize([r for r in rows if "error" not in r]).items():
            summaries[f"{prefix}{topology}"] = summary

    styles = _styles(list(summaries))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, s in summaries.items():
        _band(ax, s["knn_top1_by_round"], label, styles[label])
    ax.set_xlabel("round")
    ax.set_ylabel("device kNN top-1 (%)")
    ax.set_title("Accuracy per round (mean, shaded 95% CI over devices)")
    ax.legend(fontsize=8)
    paths.append(_save(fig, out_dir / "accuracy_vs_round.png"))

    archs = [a for a in ENCODERS.names() if any(a in s["knn_top1_by_arch"] for s in summaries.values())]
    fig, axes = plt.subplots(1, max(len(archs), 1), figsize=(4.2 * max(len(archs), 1), 4), sharey=True, squeeze=False)
    arch: str | None  # an architecture, or None for the all-devices panel below
    for ax, arch in zip(axes[0], archs):
        for label, s in summaries.items():
            by_round = {k: per_arch[arch] for k, per_arch in s["knn_top1_by_arch_by_round"].items() if arch in per_arch}
            if by_round:
                _band(ax, by_round, label, styles[label])
        sizes: dict[str, Any] = next((s["architectures"][arch] for s in summaries.values() if arch in s.get("architectures", {})), {})
        ax.set_title(f"{arch}" + (f" x{sizes['width']:g}, {sizes['parameters'] / 1e6:.2f} M params" if "parameters" in sizes else ""),
                     fontsize=9)
        ax.set_xlabel("round")
    axes[0][0].set_ylabel("device kNN top-1 (%)")
    _legend_below(fig)
    fig.suptitle("Accuracy per round by encoder (mean, shaded 95% CI over devices)")
    paths.append(_save(fig, out_dir / "accuracy_vs_round_by_arch.png"))

    paired = {label: s for label, s in summaries.items() if "knn_top1_minus_local_by_round" in s}
    if paired:
        panels = [("all devices", None), *((arch, arch) for arch in archs)]
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), sharey=True, squeeze=False)
        for ax, (title, arch) in zip(axes[0], panels):
            for label, s in paired.items():
                if arch is None:
                    by_round = s["knn_top1_minus_local_by_round"]
                else:
                    by_round = {k: per_arch[arch] for k, per_arch in s["knn_top1_minus_local_by_arch_by_round"].items() if arch in per_arch}
                if by_round:
                    _band(ax, by_round, label, styles[label])
            ax.axhline(0.0, color="black", linewidth=0.8, linestyle="--")
            n = next(iter(next(iter(paired.values()))["knn_top1_minus_local_by_round"].values()))["n"] if arch is None else None
            ax.set_title(f"{title}" + (f" (n = {n})" if n else ""), fontsize=9)
            ax.set_xlabel("round")
        axes[0][0].set_ylabel("kNN top-1 minus the same device under local (points)")
        _legend_below(fig)
        fig.suptitle("Paired gain over local per round (mean over devices, shaded 95% CI)")
        paths.append(_save(fig, out_dir / "paired_difference_vs_round.png"))

    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(len(archs), 1)
    x = np.arange(len(summaries))
    for i, arch in enumerate(archs):
        means = [s["knn_top1_by_arch"].get(arch, {}).get("mean", np.nan) for s in summaries.values()]
        cis = [s["knn_top1_by_arch"].get(arch, {}).get("ci95", 0) for s in summaries.values()]
        bars = ax.bar(x + (i - (len(archs) - 1) / 2) * width, means, width, yerr=cis, capsize=2, label=arch)
        ax.bar_label(bars, fmt="%.1f", fontsize=6)
    ax.set_xticks(x, list(summaries), rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("last-round kNN top-1 (%)")
    ax.set_title("Accuracy by encoder size (error bars: 95% CI over devices)")
    ax.legend(fontsize=8)
    paths.append(_save(fig, out_dir / "accuracy_by_arch.png"))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, s in summaries.items():
        bytes_mean = max(s["bytes_per_device"]["mean"], 1.0)  # log axis: 0 bytes drawn at 1
        style = styles[label]
        ax.errorbar(bytes_mean, s["knn_top1"]["mean"], yerr=s["knn_top1"]["ci95"], fmt=style.marker, color=style.color,
                    capsize=3, label=label)
    ax.set_xscale("log")
    ax.legend(fontsize=8, loc="upper left")  # not labels beside the points: equal bytes would overlap them
    ax.set_xlabel("bytes communicated per device (received + sent; 'local' = 0 drawn at 1)")
    ax.set_ylabel("last-round kNN top-1 (%, 95% CI)")
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


@dataclass(frozen=True)
class _Style:
    """How one series is drawn in every figure of a call, so a topology keeps its look."""

    color: str
    marker: str
    linestyle: str
    dodge: float  # x offset in rounds, so series with equal values stay visible side by side


def _styles(labels: list[str]) -> dict[str, _Style]:
    """One fixed colour, marker and line style per label, in the order of the first figure."""
    colors = [f"C{i}" for i in range(10)]
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    linestyles = ["-", "--", "-.", ":"]
    spread = 0.06
    return {
        label: _Style(colors[i % len(colors)], markers[i % len(markers)], linestyles[i % len(linestyles)],
                      (i - (len(labels) - 1) / 2) * spread / max(len(labels) - 1, 1))
        for i, label in enumerate(labels)
    }


def _band(ax: Any, by_round: dict[str, dict[str, float]], label: str, style: _Style) -> None:
    """A mean line over rounds with its 95% CI shaded (``by_round``: round -> statistics)."""
    rounds = sorted(by_round, key=int)
    mean = np.array([by_round[k]["mean"] for k in rounds])
    ci = np.array([by_round[k]["ci95"] for k in rounds])
    x = np.array([int(k) for k in rounds]) + style.dodge
    ax.plot(x, mean, marker=style.marker, linestyle=style.linestyle, color=style.color, label=label)
    ax.fill_between(x, mean - ci, mean + ci, alpha=0.15, color=style.color)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _legend_below(fig: Any) -> None:
    """One legend for all panels, under them, so that no panel's data is hidden."""
    entries: dict[str, Any] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    fig.legend(list(entries.values()), list(entries), loc="lower center", ncol=len(entries), fontsize=8, frameon=False)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout(rect=(0, 0.07, 1, 1) if fig.legends else None)  # room for a legend under the panels
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
