"""The run's figures: per-round means with 95% CI bands, overall and by architecture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crlsc_fl.outputs.plots import plot_runs


def _rows(topology: str, offset: float) -> list[dict]:
    rng = np.random.default_rng(len(topology))
    return [
        {"topology": topology, "round": r, "device": d, "arch": "resnet18" if d < 6 else "resnet50", "width": 0.25,
         "parameters": 7e5, "flops_per_image": 1e7, "knn_top1": offset + 5 * r + rng.normal(0, 2), "knn_top5": 60.0,
         "bytes_received": 10.0 * d, "bytes_sent": 0.0, "train_seconds": 1.0}
        for r in (1, 2, 3) for d in range(8)
    ]


@pytest.mark.parametrize("runs", [{"": _rows("local", 10) + _rows("p2p", 12)}, {"a/": _rows("local", 10), "b/": _rows("local", 14)}],
                         ids=["one run", "two runs"])
def test_figures_are_written_with_ci_bands_and_an_architecture_panel(runs: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.axes

    bands: list[tuple[np.ndarray, np.ndarray]] = []
    real = matplotlib.axes.Axes.fill_between

    def spy(self, x, low, high, *args, **kwargs):  # type: ignore[no-untyped-def]
        bands.append((np.asarray(low), np.asarray(high)))
        return real(self, x, low, high, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "fill_between", spy)
    paths = plot_runs(runs, tmp_path)
    names = {p.name for p in paths}
    assert {"accuracy_vs_round.png", "accuracy_vs_round_by_arch.png", "accuracy_by_arch.png", "accuracy_vs_bytes.png"} <= names
    assert all(p.stat().st_size > 0 for p in paths)
    paired = len(runs) == 1  # one run with local and p2p: p2p's paired gain, overall and per architecture
    assert ("paired_difference_vs_round.png" in names) == paired
    assert len(bands) == 2 * 3 + (3 if paired else 0)  # 2 series: one band overall, one per architecture (2); paired: 1 x 3
    assert all((high > low).all() for low, high in bands)
