"""The stage-2 report CLI end to end on generated data, and its clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from crlsc_fl.models.encoders import build_encoder, save_encoder
from crlsc_fl.stage2 import evaluate
from crlsc_fl.stage2.__main__ import main
from crlsc_fl.stage2.encoder_store import EncoderStore
from crlsc_fl.stage2.report import discover_encoders
from crlsc_fl.stage2.report_config import ReportConfig

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


def _write_run(root, run_id: int, layout: dict[str, dict[int, str]]):
    """Encoders as a run keeps them (<root>/state/<run id>/<topology>/device-<id>/encoder.pt),
    and its results directory; returns (run directory, state root)."""
    for topology, devices in layout.items():
        for device, arch in devices.items():
            folder = root / "state" / str(run_id) / topology / f"device-{device}"
            folder.mkdir(parents=True)
            save_encoder(build_encoder(arch, dim=16, hidden_dim=16), folder / "encoder.pt", topology=topology, device=device)
    run = root / "results" / str(run_id)
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"run_id": run_id, "scenario": {"scenario.topologies": ",".join(layout)}}))
    return run, root / "state"


@pytest.fixture(scope="module")
def paired_run(tmp_path_factory):
    """The same 3 devices under local and p2p, as scenario.keep-devices leaves them."""
    torch.manual_seed(1)
    return _write_run(tmp_path_factory.mktemp("paired"), 11, {t: {0: "resnet18", 1: "resnet18", 2: "resnet18"} for t in ("local", "p2p")})


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
    assert not (out / "reconstruction-star-device-1.png").exists()  # figures for the first device of each topology
    table = (out / "probes.md").read_text()
    assert "| star-device-0 | star | synthetic | linear |" in table and "cifar100:" in table
    link = summary["encoders"][0]["link"]
    channels = {(row["channel"], row.get("snr_db", row.get("ber"))) for row in link["channels"]}
    assert channels == {
        ("ideal", None), ("awgn", -5.0), ("awgn", 0.0), ("awgn", 5.0), ("awgn", 10.0),  # AWGN also at the paired table's SNRs
        ("rayleigh", -5.0), ("rayleigh", 10.0), ("bsc", 0.01), ("bsc", 0.2),
    }
    assert {"vs_darkened_input", "vs_original"} <= set(link["lowlight"])
    assert summary["paired"] is None and not (out / "paired.md").exists()  # no local topology to pair against
    assert summary["timing"]["evaluated"] == 3 and set(summary["timing"]["phases"]) >= {"decoder_training", "channel_sweep", "figures"}

    # the same in two worker processes: the same numbers
    parallel = tmp_path / "parallel"
    assert main(["--run-dir", str(run_dir), "--out", str(parallel), "--jobs", "2", *TINY_ARGS]) == 0
    again = json.loads((parallel / "summary.json").read_text())
    assert [(e["label"], e["probes"], e["link"]["channels"]) for e in again["encoders"]] == [
        (e["label"], e["probes"], e["link"]["channels"]) for e in summary["encoders"]
    ]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--arch", "resnet50"], "holds a 'resnet18' encoder, but 'resnet50' was chosen"),
        (["--snr-db=-40,0"], "report.snr-db.0=-40.0: out of range [-20, 40]"),
        (["--ber", "0.7"], "report.ber.0=0.7: out of range [0, 0.5]"),
        (["--num-codes", "1"], "report.link.num-codes=1: Input should be greater than or equal to 2"),
        (["--probe-epochs", "0"], "report.probe.epochs=0: out of range [1, inf)"),
        (["--brightness", "1.5"], "report.brightness=1.5: out of range (0, 1]"),
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


def test_paired_report_resumes_after_a_crash(paired_run, tmp_path, monkeypatch, capsys) -> None:
    """A crash loses no finished encoder; re-runs evaluate only what is missing, unreadable or gone."""
    run, state = paired_run
    out = tmp_path / "paired"
    argv = ["--run-dir", str(run), "--state-dir", str(state), "--out", str(out), *TINY_ARGS, "--probe-datasets", "synthetic"]
    real_run_link = evaluate.run_link

    def crash_on_p2p_1(entry, *args, **kwargs):
        if entry.label == "p2p-device-1":
            raise MemoryError("killed")
        return real_run_link(entry, *args, **kwargs)

    monkeypatch.setattr(evaluate, "run_link", crash_on_p2p_1)
    with pytest.raises(RuntimeError, match="encoder p2p-device-1 failed .MemoryError: killed.; 4 finished encoders are kept"):
        main(argv)
    assert sorted(p.stem for p in (out / "encoders").glob("*.json")) == [
        "local-device-0", "local-device-1", "local-device-2", "p2p-device-0"
    ]
    monkeypatch.undo()
    capsys.readouterr()

    assert main(argv) == 0
    assert "6 encoders: 4 already done" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["timing"]["evaluated"] == 2 and summary["timing"]["reused"] == 4
    paired = summary["paired"]
    assert list(paired["topologies"]) == ["local", "p2p"]
    values = {(e["topology"], e["device"]): e["link"]["channels"][0]["psnr"] for e in summary["encoders"]}
    diff = paired["topologies"]["p2p"]["metrics"]["psnr/ideal"]["minus_local"]
    assert diff["n"] == 3 and diff["mean"] == pytest.approx(sum(values[("p2p", d)] - values[("local", d)] for d in "012") / 3)
    assert diff["ci95"] > 0
    assert [m["key"] for m in paired["metrics"]] == [
        "synthetic/linear/top1", "synthetic/mlp/top1", "psnr/ideal", "psnr/awgn/-5", "psnr/awgn/0", "psnr/awgn/5", "psnr/lowlight"
    ]
    table = (out / "paired.md").read_text()
    assert table.startswith("| topology | devices | linear top-1 synthetic (%) | MLP top-1 synthetic (%) | ideal-channel PSNR (dB) |")
    assert "| `local` | 3 |" in table and "| `p2p` | 3 |" in table and " ± " in table
    assert (out / "paired_differences.png").stat().st_size > 0
    assert {p.name for p in out.glob("reconstruction-*.png")} == {"reconstruction-local-device-0.png", "reconstruction-p2p-device-0.png"}

    # nothing left to do: the same numbers without evaluating anything
    assert main(argv) == 0
    assert "6 encoders: 6 already done" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["paired"] == paired

    # a file cut short and a deleted one are evaluated again
    (out / "encoders" / "local-device-2.json").write_text('{"key": ')
    (out / "encoders" / "p2p-device-0.json").unlink()
    assert main(argv) == 0
    log = capsys.readouterr().out
    assert "6 encoders: 4 already done" in log and "[local-device-2] evaluated again: unreadable local-device-2.json" in log
    assert json.loads((out / "summary.json").read_text())["paired"] == paired  # deterministic


def test_stored_results_are_keyed_by_settings_and_encoder_file(tmp_path) -> None:
    encoder = tmp_path / "a.pt"
    save_encoder(build_encoder("resnet18", dim=16, hidden_dim=16), encoder)
    settings = ReportConfig().settings()
    store = EncoderStore(tmp_path / "out", settings)
    key = store.key(encoder)
    store.save("a", {"key": key, "link": None})
    assert store.finished("a", key, needs_figures=False) == ({"key": key, "link": None}, "")
    assert store.finished("a", key, needs_figures=True) == (None, "figures missing")
    assert "figure_devices" not in settings  # drawing figures for other devices changes no number
    other_settings = EncoderStore(tmp_path / "out", {**settings, "seed": 1})
    assert other_settings.finished("a", other_settings.key(encoder), False)[1] == "done with other settings or another encoder file"
    save_encoder(build_encoder("resnet18", dim=16, hidden_dim=16), encoder)  # retrained: other weights
    assert store.key(encoder) != key


def test_encoders_in_the_runs_topology_order_and_by_device_number(tmp_path) -> None:
    run, state = _write_run(tmp_path, 13, {"p2p": {10: "resnet18", 2: "resnet18"}, "local": {10: "resnet18", 2: "resnet18"}})
    entries = discover_encoders(run_dirs=[run], state_dir=state)
    assert [e.label for e in entries] == ["p2p-device-2", "p2p-device-10", "local-device-2", "local-device-10"]
    assert {e.arch for e in entries} == {"resnet18"}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--jobs", "0"], "--jobs=0 and --threads=1 must be at least 1"),
        (["--figure-devices", "-1"], "report.figure-devices=-1: out of range [0, inf)"),
        (["--twice"], "device 0 has 2 encoders under topology local"),
    ],
)
def test_paired_bad_input_fails_before_any_work(paired_run, tmp_path, capsys, extra: list[str], message: str) -> None:
    run, state = paired_run
    out = tmp_path / "out"
    twice = ["--run-dir", str(run)] if extra == ["--twice"] else extra
    assert main(["--run-dir", str(run), "--state-dir", str(state), "--out", str(out), *TINY_ARGS, *twice]) == 2
    assert message in capsys.readouterr().err
    assert not (out / "encoders").exists()


def test_devices_of_two_architectures_are_not_paired(tmp_path, capsys) -> None:
    run, state = _write_run(tmp_path, 12, {"local": {4: "resnet18"}, "p2p": {4: "resnet34"}})
    assert main(["--run-dir", str(run), "--state-dir", str(state), "--out", str(tmp_path / "out"), *TINY_ARGS]) == 2
    assert "device 4 has encoders of different architectures (local: resnet18, p2p: resnet34)" in capsys.readouterr().err
