"""Stage-2 metrics paired per device against ``local``: constructed cases with known differences."""

from __future__ import annotations

import numpy as np
import pytest

from crlsc_fl.stage2.paired import (
    DeviceMetrics,
    Metric,
    check_pairing,
    encoder_values,
    paired_markdown,
    paired_statistics,
    table_metrics,
)

T975 = {2: 4.302653, 3: 3.182446, 4: 2.776445}  # Student-t 0.975 quantiles by degrees of freedom (tables)
PSNR = Metric("psnr/ideal", "ideal-channel PSNR (dB)", "dB")
TOP1 = Metric("cifar10/linear/top1", "linear top-1 cifar10 (%)", "%")

# 5 devices whose own level differs a lot (shards, architectures); the topologies add known
# per-device gains on top of it
LEVEL = {"0": 20.0, "1": 26.0, "2": 31.0, "3": 38.0, "4": 45.0}
GAIN = {"p2p": {"0": 1.0, "1": 2.0, "2": 3.0, "3": 2.5, "4": 1.5}, "fedavg": {"0": -0.5, "1": 0.5, "2": -1.0, "3": 0.0}}


def _devices() -> list[DeviceMetrics]:
    devices = [DeviceMetrics("local", d, "resnet18", {PSNR.key: v, TOP1.key: 2 * v}) for d, v in LEVEL.items()]
    for topology, gains in GAIN.items():  # fedavg lacks device 4 (it failed there)
        devices += [DeviceMetrics(topology, d, "resnet18", {PSNR.key: LEVEL[d] + g, TOP1.key: 2 * LEVEL[d]}) for d, g in gains.items()]
    return devices


def test_paired_differences_and_t_intervals_of_a_constructed_case() -> None:
    paired = paired_statistics(_devices(), [TOP1, PSNR])
    assert list(paired["topologies"]) == ["local", "p2p", "fedavg"]  # the reference first, then as given
    p2p = paired["topologies"]["p2p"]["metrics"][PSNR.key]
    gains = np.array(list(GAIN["p2p"].values()))
    assert p2p["minus_local"]["mean"] == pytest.approx(2.0) and p2p["minus_local"]["n"] == 5
    assert p2p["minus_local"]["ci95"] == pytest.approx(T975[4] * gains.std(ddof=1) / np.sqrt(5), rel=1e-5)
    # the devices' own spread (std ~10 dB) hides a 2 dB gain unpaired; paired, it is clear
    assert p2p["ci95"] > 5 * p2p["minus_local"]["ci95"]
    assert p2p["mean"] == pytest.approx(np.mean(list(LEVEL.values())) + 2.0)
    fedavg = paired["topologies"]["fedavg"]["metrics"][PSNR.key]["minus_local"]
    assert fedavg["n"] == 4 and fedavg["devices"] == ["0", "1", "2", "3"]  # only devices present in both
    assert fedavg["mean"] == pytest.approx(-0.25)
    assert fedavg["ci95"] == pytest.approx(T975[3] * np.std([-0.5, 0.5, -1.0, 0.0], ddof=1) / 2, rel=1e-5)
    same = paired["topologies"]["fedavg"]["metrics"][TOP1.key]["minus_local"]
    assert same["mean"] == 0.0 and same["ci95"] == 0.0  # identical per device: no difference, no spread
    assert "minus_local" not in paired["topologies"]["local"]["metrics"][PSNR.key]


def test_one_device_has_no_interval_and_missing_metrics_are_left_out() -> None:
    devices = [DeviceMetrics("local", "7", "resnet50", {PSNR.key: 12.0}), DeviceMetrics("hybrid", "7", "resnet50", {PSNR.key: 13.5})]
    paired = paired_statistics(devices, [TOP1, PSNR])
    assert [m["key"] for m in paired["metrics"]] == [PSNR.key]  # no device has probe results
    diff = paired["topologies"]["hybrid"]["metrics"][PSNR.key]["minus_local"]
    assert diff["mean"] == pytest.approx(1.5) and diff["n"] == 1 and diff["ci95"] is None
    assert "| `hybrid` | 1 | 13.50 (+1.50) |" in paired_markdown(paired)


def test_without_the_reference_there_are_means_but_no_differences() -> None:
    paired = paired_statistics([d for d in _devices() if d.topology != "local"], [PSNR])
    assert all("minus_local" not in t["metrics"][PSNR.key] for t in paired["topologies"].values())


def test_markdown_table_bold_when_the_interval_excludes_zero() -> None:
    table = paired_markdown(paired_statistics(_devices(), [TOP1, PSNR]))
    lines = table.splitlines()
    assert lines[0] == "| topology | devices | linear top-1 cifar10 (%) | ideal-channel PSNR (dB) |"
    assert lines[2] == "| `local` | 5 | 64.0 | 32.00 |"
    assert lines[3].startswith("| `p2p` | 5 | 64.0 (+0.0 ± 0.0) | 34.00 (**+2.00 ± ")
    assert lines[4].startswith("| `fedavg` | 4 | 57.5 (+0.0 ± 0.0) | 28.50 (-0.25 ± ")
    assert "**" not in lines[4]  # fedavg's difference is within noise of 0
    assert "Devices: 5 resnet18." in table


def test_encoder_values_from_probe_rows_and_link_results() -> None:
    probes = [
        {"dataset": "cifar10", "probe": "linear", "top1": 0.25, "top5": 0.7},
        {"dataset": "cifar10", "probe": "mlp", "top1": 0.3, "top5": 0.75},
        {"dataset": "stl10", "skipped": "not found"},
    ]
    link = {
        "channels": [{"channel": "ideal", "psnr": 14.0}, {"channel": "awgn", "snr_db": 0.0, "psnr": 13.0},
                     {"channel": "rayleigh", "snr_db": 0.0, "psnr": 11.0}, {"channel": "bsc", "ber": 0.01, "psnr": 12.0}],
        "lowlight": {"vs_darkened_input": {"psnr": 15.0}, "vs_original": {"psnr": 9.0}},
    }
    values = encoder_values(probes, link)
    assert values == {"cifar10/linear/top1": 25.0, "cifar10/mlp/top1": 30.0, "psnr/ideal": 14.0, "psnr/awgn/0": 13.0, "psnr/lowlight": 15.0}
    keys = [m.key for m in table_metrics(["cifar10", "stl10"], ["linear", "mlp"], True, [0.0, 10.0])]
    assert set(values) <= set(keys) and "psnr/awgn/10" in keys and "stl10/mlp/top1" in keys
    assert encoder_values(None, None) == {}


@pytest.mark.parametrize(
    "records, message",
    [
        ([("local", "1", "resnet18"), ("local", "1", "resnet18")], "device 1 has 2 encoders under topology local"),
        ([("local", "1", "resnet18"), ("p2p", "1", "resnet34")], "device 1 has encoders of different architectures (local: resnet18, p2p: resnet34)"),
    ],
)
def test_pairing_errors(records: list[tuple[str, str, str]], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_pairing(records)
    check_pairing([("local", "1", "resnet18"), ("p2p", "1", "resnet18"), ("p2p", "2", "resnet50")])
