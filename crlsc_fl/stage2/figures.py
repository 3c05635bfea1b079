"""Stage-2 figures: reconstruction grids like the paper's figs. 4-5 and channel sweeps.

- :func:`reconstruction_grid`: odd rows (1st, 3rd, ...) are reconstructions and even rows
  the originals right below them, as in the paper's figures 4 and 5.
- :func:`save_reconstruction_figure`: several grids side by side (normal vs low-light).
- :func:`save_degradation_figure`: the same images decoded at falling channel quality.
- :func:`save_channel_curves`: PSNR and SSIM against SNR (AWGN, Rayleigh) and against
  bit-error rate (BSC), one line per group (topology or encoder) with a min-max band
  when the group holds several encoders, the ideal channel dashed.
- :func:`save_paired_differences`: per metric, each topology's mean per-device difference
  to the reference topology with its 95% interval as error bar.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

CHANNEL_AXES = {"awgn": ("snr_db", "SNR (dB)"), "rayleigh": ("snr_db", "average SNR (dB)"), "bsc": ("ber", "bit-error rate")}
METRICS = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"))


def _to_hwc(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, 3, H, W) floats in [0, 1] or (N, H, W, 3) uint8 -> (N, H, W, 3) floats in [0, 1]."""
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    return np.clip(array.transpose(0, 2, 3, 1), 0.0, 1.0)


def tile(rows: Sequence[np.ndarray], pad: int = 1) -> np.ndarray:
    """Tile rows of (N, H, W, 3) images into one picture with ``pad`` white pixels between."""
    n, h, w, _ = rows[0].shape
    canvas = np.ones((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), dtype=np.float32)
    for r, row in enumerate(rows):
        for c in range(n):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            canvas[y : y + h, x : x + w] = row[c]
    return canvas


def reconstruction_grid(originals: torch.Tensor | np.ndarray, reconstructions: torch.Tensor, columns: int = 8) -> np.ndarray:
    """Rows: reconstruction, original, reconstruction, original... ``columns`` images per row."""
    orig, recon = _to_hwc(originals), _to_hwc(reconstructions)
    pairs = len(orig) // columns
    if pairs == 0:
        raise ValueError(f"need at least columns={columns} images for a grid, got {len(orig)}")
    rows: list[np.ndarray] = []
    for p in range(pairs):
        part = slice(p * columns, (p + 1) * columns)
        rows += [recon[part], orig[part]]
    return tile(rows)


def _save(fig: plt.Figure, path: str | os.PathLike[str]) -> None:
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)


def save_reconstruction_figure(path: str | os.PathLike[str], panels: Mapping[str, np.ndarray], title: str = "") -> None:
    """Grids from :func:`reconstruction_grid`, side by side, each under its title."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6), squeeze=False)
    for ax, (name, grid) in zip(axes[0], panels.items()):
        ax.imshow(grid, interpolation="nearest")
        ax.set_title(f"{name}\n(odd rows reconstructed, even rows original)", fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path)


def save_degradation_figure(
    path: str | os.PathLike[str], originals: torch.Tensor | np.ndarray, decoded: Mapping[str, torch.Tensor], title: str = ""
) -> None:
    """First row the originals, then one row of reconstructions per channel condition."""
    labels = ["original", *decoded]
    rows = [_to_hwc(originals)] + [_to_hwc(r) for r in decoded.values()]
    grid = tile(rows)
    fig, ax = plt.subplots(figsize=(0.55 * len(rows[0]) + 1.6, 0.55 * len(rows) + 0.6))
    ax.imshow(grid, interpolation="nearest")
    h = rows[0].shape[1] + 1
    ax.set_yticks([1 + h * i + h / 2 for i in range(len(rows))], labels, fontsize=7)
    ax.set_xticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)
    _save(fig, path)


def save_channel_curves(
    path: str | os.PathLike[str], results: Mapping[str, Sequence[Sequence[Mapping[str, float | str]]]], title: str = ""
) -> None:
    """``results[group]`` holds, per encoder of the group, its :func:`evaluate_link` rows.

    Draws PSNR (top) and SSIM (bottom) against SNR or bit-error rate, one column per channel
    present; the line is the group mean, the band the min-max over the group's encoders.
    """
    channels = [c for c in CHANNEL_AXES if any(r["channel"] == c for runs in results.values() for rows in runs for r in rows)]
    if not channels:
        raise ValueError("no awgn, rayleigh or bsc results to plot")
    fig, axes = plt.subplots(len(METRICS), len(channels), figsize=(4.2 * len(channels), 6.4), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for g, (group, runs) in enumerate(results.items()):
        colour = colours[g % len(colours)]
        for col, channel in enumerate(channels):
            key, _ = CHANNEL_AXES[channel]
            curves = []
            for rows in runs:
                points = sorted(
                    (float(r[key]), float(r["psnr"]), float(r["ssim"]))
                    for r in rows
                    if r["channel"] == channel and (channel != "bsc" or float(r[key]) > 0)  # log axis; ber 0 = ideal line
                )
                curves.append(np.array(points).reshape(-1, 3))
            if any(len(c) == 0 for c in curves) or any(len(c) != len(curves[0]) for c in curves):
                continue  # nothing (or mismatched sweeps) to draw for this channel
            ideal = [np.array([[float(r["psnr"]), float(r["ssim"])] for r in rows if r["channel"] == "ideal"]) for rows in runs]
            for m, (_metric, _) in enumerate(METRICS):
                ax = axes[m][col]
                stacked = np.stack([c[:, 1 + m] for c in curves])
                x = curves[0][:, 0]
                label = f"{group} ({len(runs)})" if len(runs) > 1 else group
                ax.plot(x, stacked.mean(0), marker="o", ms=3, color=colour, label=label)
                if len(runs) > 1:
                    ax.fill_between(x, stacked.min(0), stacked.max(0), color=colour, alpha=0.2)
                ideal_values = [i[0, m] for i in ideal if len(i)]
                if ideal_values:
                    ax.axhline(float(np.mean(ideal_values)), color=colour, ls="--", lw=0.8)
    for col, channel in enumerate(channels):
        key, xlabel = CHANNEL_AXES[channel]
        for m, (_, ylabel) in enumerate(METRICS):
            ax = axes[m][col]
            if channel == "bsc":
                ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if m == 0:
                ax.set_title(f"{channel} (dashed: ideal channel)", fontsize=9)
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def save_paired_differences(path: str | os.PathLike[str], paired: Mapping[str, Any], title: str = "") -> None:
    """One panel per metric of :func:`crlsc_fl.stage2.paired.paired_statistics`: for every
    topology but the reference, the mean per-device difference to the reference with its 95%
    interval (no bar for one device), and the zero line."""
    reference, metrics = paired["reference"], paired["metrics"]
    topologies = [t for t in paired["topologies"] if t != reference]
    if not metrics or not topologies:
        raise ValueError("nothing to plot: the paired statistics need metrics and a topology besides the reference")
    columns = min(4, len(metrics))
    rows = math.ceil(len(metrics) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.9 * rows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, metric in enumerate(metrics):
        ax = axes[i // columns][i % columns]
        for x, topology in enumerate(topologies):
            diff = paired["topologies"][topology]["metrics"].get(metric["key"], {}).get(f"minus_{reference}")
            if diff is None:
                continue
            error = diff["ci95"] if diff["ci95"] is not None else 0.0
            ax.errorbar(x, diff["mean"], yerr=error, fmt="o", capsize=4, color=colours[x % len(colours)])
            ax.annotate(f"n={diff['n']}", (x, diff["mean"]), textcoords="offset points", xytext=(6, -3), fontsize=6)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xticks(range(len(topologies)), topologies, rotation=30, fontsize=7)
        ax.set_xlim(-0.5, len(topologies) - 0.5)
        ax.set_title(metric["label"], fontsize=8)
        ax.set_ylabel(f"minus {reference} ({'points' if metric['unit'] == '%' else metric['unit']})", fontsize=7)
        ax.grid(alpha=0.3, axis="y")
    for j in range(len(metrics), rows * columns):
        axes[j // columns][j % columns].axis("off")
    if title:
        fig.suptitle(f"{title} (95% t-intervals over devices)", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
