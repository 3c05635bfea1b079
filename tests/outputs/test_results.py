"""Per-topology summary of metric rows: last-round and per-round statistics with 95% CIs
(overall and by architecture), encoder sizes, errors, bytes, seconds per round."""

from __future__ import annotations

import numpy as np
import pytest

from crlsc_fl.outputs.results import cpu_use, seconds_per_round, summarize


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
    assert {k: v["mean"] for k, v in summary["knn_top1_by_round"].items()} == {"1": 10.0, "2": 36.0}
    assert summary["knn_top1_by_round"]["2"] == stats
    assert summary["knn_top1_by_round"]["1"]["ci95"] == 0.0 and summary["knn_top1_by_round"]["1"]["n"] == 4


@pytest.mark.parametrize("round_", [1, 2])
def test_every_round_has_statistics_by_architecture(round_: int) -> None:
    accuracy = {(1, 0): 10.0, (1, 1): 14.0, (1, 2): 30.0, (2, 0): 20.0, (2, 1): 26.0, (2, 2): 50.0}
    archs = {0: "resnet18", 1: "resnet18", 2: "resnet50"}
    sizes = {"resnet18": (0.25, 7e5, 1e7), "resnet50": (1.0, 2.4e7, 1.6e8)}
    rows = [
        _row(d, r, k, archs[d], width=sizes[archs[d]][0], parameters=sizes[archs[d]][1], flops_per_image=sizes[archs[d]][2])
        for (r, d), k in accuracy.items()
    ]
    summary = summarize(rows)["p2p"]
    by_arch = summary["knn_top1_by_arch_by_round"][str(round_)]
    resnet18 = [accuracy[(round_, 0)], accuracy[(round_, 1)]]
    assert by_arch["resnet18"]["mean"] == pytest.approx(np.mean(resnet18))
    assert by_arch["resnet18"]["ci95"] == pytest.approx(1.96 * np.std(resnet18, ddof=1) / np.sqrt(2))
    assert by_arch["resnet50"]["n"] == 1 and by_arch["resnet50"]["mean"] == accuracy[(round_, 2)]
    assert summary["architectures"] == {
        "resnet18": {"devices": 2, "width": 0.25, "parameters": 7e5, "flops_per_image": 1e7},
        "resnet50": {"devices": 1, "width": 1.0, "parameters": 2.4e7, "flops_per_image": 1.6e8},
    }


def test_paired_difference_to_local_uses_the_devices_present_in_both() -> None:
    local = [30.0, 35.0, 40.0, 45.0]
    gains = [2.0, 3.0, 1.0]  # device 3 failed under p2p in the last round
    rows = [{**_row(d, 2, k), "topology": "local"} for d, k in enumerate(local)]
    rows += [_row(d, 2, local[d] + g) for d, g in enumerate(gains)]
    rows.append({"topology": "p2p", "round": 2, "device": 3, "arch": "resnet18", "error": "boom"})
    summary = summarize(rows)
    paired = summary["p2p"]["knn_top1_minus_local"]
    assert paired["round"] == 2 and paired["n"] == 3 and paired["mean"] == pytest.approx(2.0)
    assert paired["ci95"] == pytest.approx(1.96 * np.std(gains, ddof=1) / np.sqrt(3))
    # unpaired, the spread of the shards (std ~6) would hide a 2-point gain; paired, it shows
    assert paired["ci95"] < summary["p2p"]["knn_top1"]["ci95"]
    assert "knn_top1_minus_local" not in summary["local"]


def test_device_rounds_are_counted_per_node_that_ran_them() -> None:
    rows = [_row(0, 1, 30.0, node="a"), _row(1, 1, 30.0, node="b"), _row(0, 2, 30.0, node="b"), _row(1, 2, 30.0, node="b")]
    rows.append({"topology": "p2p", "round": 2, "device": 2, "arch": "resnet18", "error": "boom"})  # no reply: not counted
    assert summarize(rows)["p2p"]["device_rounds_by_node"] == {"a": 1, "b": 3}
    assert summarize([_row(0, 1, 30.0)])["p2p"]["device_rounds_by_node"] == {}  # rows from before the field


def test_no_paired_difference_without_local() -> None:
    assert "knn_top1_minus_local" not in summarize([_row(0, 1, 30.0), _row(1, 1, 32.0)])["p2p"]


def test_seconds_per_round_per_topology_keeps_the_last_run_of_a_redone_round() -> None:
    rows = [
        {"label": "quick/local", "round": 1, "wall_seconds": 70.0},
        {"label": "quick/local", "round": 2, "wall_seconds": 90.0},  # interrupted, redone on resume
        {"label": "quick/local", "round": 2, "wall_seconds": 75.0},
        {"label": "quick/cloud-edge", "round": 1, "wall_seconds": 80.0},
    ]
    assert seconds_per_round(rows) == {"local": {"1": 70.0, "2": 75.0}, "cloud-edge": {"1": 80.0}}


def test_paired_difference_every_round_and_by_architecture() -> None:
    archs = {0: "resnet18", 1: "resnet18", 2: "resnet50"}
    local = {(1, 0): 20.0, (1, 1): 22.0, (1, 2): 18.0, (2, 0): 25.0, (2, 1): 27.0, (2, 2): 21.0}
    gain = {(1, 0): 1.0, (1, 1): 3.0, (1, 2): -1.0, (2, 0): 4.0, (2, 1): 6.0, (2, 2): 2.0}
    rows = [{**_row(d, r, k, archs[d]), "topology": "local"} for (r, d), k in local.items()]
    rows += [_row(d, r, local[(r, d)] + gain[(r, d)], archs[d]) for (r, d) in local]
    summary = summarize(rows)["p2p"]
    by_round = summary["knn_top1_minus_local_by_round"]
    assert {k: v["mean"] for k, v in by_round.items()} == {"1": pytest.approx(1.0), "2": pytest.approx(4.0)}
    assert by_round["2"]["n"] == 3 and by_round["2"] == summary["knn_top1_minus_local"]
    by_arch = summary["knn_top1_minus_local_by_arch_by_round"]
    assert by_arch["1"]["resnet18"]["mean"] == pytest.approx(2.0) and by_arch["1"]["resnet18"]["n"] == 2
    assert by_arch["2"]["resnet50"] == {"round": 2, "mean": 2.0, "std": 0.0, "ci95": 0.0, "min": 2.0, "max": 2.0, "n": 1}


def test_cpu_use_is_device_seconds_over_wall_seconds_times_cores() -> None:
    rows = [_row(0, 1, 30.0, device_seconds=50.0), _row(1, 1, 30.0, device_seconds=70.0),
            {"topology": "p2p", "round": 1, "device": 2, "arch": "resnet18", "error": "boom"}]
    use = cpu_use(rows, wall_seconds=100.0, cores=2)
    assert use == {"device_seconds": 120.0, "wall_seconds": 100.0, "cores": 2.0, "fraction": pytest.approx(0.6)}
