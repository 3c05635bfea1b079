"""The stage-2 report CLI end to end on generated data, and its clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from crlsc_fl.models.encoders import build_encoder, save_encoder
from crlsc_fl.stage2.__main__ import main
from crlsc_fl.stage2.report import discover_encoders

TINY_ARGS = [
    "--dataset", "synthetic", "--probe-datasets", "synthetic,cifar100", "--train-samples", "32", "--test-samples", "16",
    "--epochs", "1", "--probe-epochs", "2", "--num-codes", "16", "--snr-db=-5,10", "--ber", "0.01,0.2", "--no-download",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, monkeypatch_module):
    """A finished run as the federation writes it: results/<scenario>/<run id>/config.json, and
    encoders in device-local state, <state root>/<run id>/<topology>/device-<id>/encoder.pt."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("runs")
    state = root / "device-state"
    monkeypatch_module.setenv("CRLSC_STATE_DIR", str(state))
    for i, topology in enumerate(["star", "star", "ring"]):
        folder = state / "7" / topology / f"device-{i}"
        folder.mkdir(parents=True)
        save_encoder(build_encoder("resnet18", dim=16, hidden_dim=16), folder / "encoder.pt", topology=topology, device=i)
    run = root / "results" / "ci" / "7"
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"run_id": 7}')
    return run


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_discover_groups_by_topology(run_dir, tmp_path) -> None:
    entries = discover_encoders(run_dirs=[run_dir])
    assert sorted((e.label, e.topology) for e in entries) == [
        ("ring-device-2", "ring"), ("star-device-0", "star"), ("star-device-1", "star")
    ]
    assert [e.label for e in discover_encoders(run_dirs=[run_dir], device_ids=[1])] == ["star-device-1"]
    plain = tmp_path / "plain.pt"
    save_encoder(build_encoder("resnet18", dim=16, hidden_dim=16), plain)  # no extra fields
    assert [(e.label, e.topology) for e in discover_encoders([plain])] == [("plain", "default")]


def test_cli_end_to_end(run_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CRLSC_DATA_DIR", str(tmp_path / "no-data"))  # cifar100 cannot be found: listed as skipped
    out = tmp_path / "report"
    assert main(["--run-dir", str(run_dir), "--out", str(out), "--arch", "resnet18", *TINY_ARGS]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["encoders"]) == 3 and "cifar100" in summary["datasets_missing"]
    for name in ["probes.json", "probes.md", "link.md", "channel_curves.png", "reconstruction-star-device-0.png", "degradation-ring-device-2.png"]:
        assert (out / name).stat().st_size > 0, name
    table = (out / "probes.md").read_text()
    assert "| star-device-0 | star | synthetic | linear |" in table and "cifar100:" in table
    link = summary["encoders"][0]["link"]
    channels = {(row["channel"], row.get("snr_db", row.get("ber"))) for row in link["channels"]}
    assert channels == {("ideal", None), ("awgn", -5.0), ("awgn", 10.0), ("rayleigh", -5.0), ("rayleigh", 10.0), ("bsc", 0.01), ("bsc", 0.2)}
    assert {"vs_darkened_input", "vs_original"} <= set(link["lowlight"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--arch", "resnet50"], "holds a 'resnet18' encoder, but 'resnet50' was chosen"),
        (["--snr-db=-40,0"], "snr_db=-40.0 out of range [-20, 40]"),
        (["--ber", "0.7"], "ber=0.7 out of range [0, 0.5]"),
        (["--channels", "awgn,laser"], "unknown channel 'laser'"),
        (["--probes", "svm"], "unknown probe 'svm'"),
    ],
)
def test_cli_bad_input(run_dir, tmp_path, capsys, extra: list[str], message: str) -> None:
    assert main(["--run-dir", str(run_dir), "--out", str(tmp_path / "out"), *TINY_ARGS, *extra]) == 2
    assert message in capsys.readouterr().err


def test_cli_without_encoders(tmp_path, capsys) -> None:
    assert main(["--out", str(tmp_path)]) == 2
    assert "no encoders given" in capsys.readouterr().err
