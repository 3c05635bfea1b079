"""Per-topology summary of metric rows: last-round statistics with 95% CIs, errors, bytes."""

from __future__ import annotations

import numpy as np
import pytest

from crlsc_fl.federation.results import summarize


def _row(device: int, round_: int, knn: float, arch: str = "resnet18", **extra: object) -> dict:
    return {"topology": "p2p", "round": round_, "device": device, "arch": arch, "knn_top1": knn, "knn_top5": knn + 40,
            "bytes_received": 100.0, "bytes_sent": 50.0, "train_seconds": 1.0, **extra}


def test_last_round_statistics_with_confidence_intervals() -> None:
    last = [30.0, 34.0, 38.0, 42.0]
    rows = [_row(d, 1, 10.0) for d in range(4)] + [_row(d, 2, k, "resnet50" if d == 3 else "resnet18") for d, k in enumerate(last)]
    rows.append({"topology": "p2p", "round": 2, "device": 4, "arch": "resnet18", "error": "boom"})
    summary = summarize(rows)["p2p"]
    stats = summary["knn_top1"]
    assert stats["mean"] == pytest.approx(36.0) and stats["n"] == 4
    assert stats["ci95"] == pytest.approx(1.96 * np.std(last, ddof=1) / 2)
    assert summary["knn_top1_by_arch"]["resnet50"] == {"mean": 42.0, "std": 0.0, "ci95": 0.0, "min": 42.0, "max": 42.0, "n": 1}
    assert summary["errors"] == 1 and summary["errors_by_round"] == {"1": 0, "2": 1}
    assert summary["bytes_per_device"]["mean"] == pytest.approx(300.0)  # two rounds of 150 bytes
    assert summary["knn_top1_by_round"] == {"1": 10.0, "2": 36.0}
