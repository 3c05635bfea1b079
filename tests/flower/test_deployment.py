"""End-to-end tests of the Flower runners (:mod:`crlsc_fl.deploy`, :mod:`crlsc_fl.launch`).

``crlsc-fl deploy`` runs over TLS with SuperNode authentication unless ``--insecure``: the
tests below without that flag exercise the secure path (fresh keys per run, or ``--keys``).

The slow tests start real Flower processes on loopback and run against two apps:

* ``fake``: a tiny throwaway Flower app written to ``tmp_path`` whose run config has exactly
  the keys of :class:`crlsc_fl.scenario.config.ScenarioConfig`; its ServerApp sends one message per node
  per round and writes ``metrics.jsonl`` and ``summary.json`` to
  ``$CRLSC_PROJECT_ROOT/<scenario.results-dir>/<scenario.name>/<run-id>/`` like the real app;
* ``real``: this repository with ``scenarios/ci.toml`` (skipped until the real ServerApp,
  ``[tool.flwr.app]`` and the scenario exist); results go to ``tmp_path`` via
  ``--set scenario.results-dir=<abs path>``.

Every test checks that every PID the runner caused is gone afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from benchmarks.same_results import compare
from crlsc_fl import deploy
from crlsc_fl.launcher.keys import make_keys
from crlsc_fl.launcher.processes import describe, is_running
from crlsc_fl.launcher.session import FlowerSession

REPO = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------- the fake app

FAKE_SERVER = '''
"""Fake ServerApp: waits for all nodes, one message per node per round, writes results."""
import json
import os
import time
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    if str(cfg["scenario.name"]).startswith("fail"):
        raise RuntimeError("fake app: failure requested by scenario.name")
    results = Path(str(cfg["scenario.results-dir"]))
    if not results.is_absolute():
        results = Path(os.environ["CRLSC_PROJECT_ROOT"]) / results
    out = results / str(cfg["scenario.name"]) / str(context.run_id)
    out.mkdir(parents=True, exist_ok=True)
    want, t0 = int(cfg["devices.num-devices"]), time.time()
    nodes = list(grid.get_node_ids())
    while len(nodes) < want and time.time() - t0 < 120:
        time.sleep(0.2)
        nodes = list(grid.get_node_ids())
    with open(out / "metrics.jsonl", "w") as f:
        for rnd in range(int(cfg["scenario.rounds"])):
            msgs = [Message(RecordDict({"c": ConfigRecord({"round": rnd})}), dst_node_id=n,
                            message_type=MessageType.TRAIN) for n in nodes]
            replies = [r for r in grid.send_and_receive(msgs, timeout=120) if not r.has_error()]
            parts = sorted(int(r.content["r"]["partition"]) for r in replies)
            f.write(json.dumps({"round": rnd, "replies": len(replies), "partitions": parts,
                                "seconds": round(time.time() - t0, 3), "time": time.time()}) + "\\n")
            f.flush()
    (out / "summary.json").write_text(json.dumps({"nodes": len(nodes), "seconds": time.time() - t0, "started": t0}))
'''

FAKE_CLIENT = '''
"""Fake ClientApp: replies with its partition id."""
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    part = int(context.node_config.get("partition-id", -1))
    return Message(RecordDict({"r": ConfigRecord({"partition": part})}), reply_to=msg)
'''


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def write_fake_app(root: Path) -> Path:
    """Write the fake Flower app (package ``fakeapp``) under ``root``; return ``root``."""
    from crlsc_fl.scenario.config import ScenarioConfig

    pkg = root / "fakeapp"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "server_app.py").write_text(textwrap.dedent(FAKE_SERVER))
    (pkg / "client_app.py").write_text(textwrap.dedent(FAKE_CLIENT))
    pyproject = {
        "build-system": {"requires": ["hatchling"], "build-backend": "hatchling.build"},
        "project": {"name": "fakeapp", "version": "0.1.0", "license": "Apache-2.0",
                    "dependencies": ["flwr[simulation]==1.42.0"]},
        "tool": {"flwr": {"app": {
            "publisher": "crlsc-tests",
            "components": {"serverapp": "fakeapp.server_app:app", "clientapp": "fakeapp.client_app:app"},
            "config": unflatten(ScenarioConfig().to_flat()),
        }}},
    }
    (root / "pyproject.toml").write_text(tomli_w.dumps(pyproject))
    (root / ".gitignore").write_text("results/\n")
    return root


def write_scenario(path: Path, name: str, devices: int = 3, rounds: int = 2) -> Path:
    """A tiny valid scenario for the fake app (generated data: the runners load the dataset first)."""
    path.write_text(f'[scenario]\nname = "{name}"\nrounds = {rounds}\n\n[devices]\nnum-devices = {devices}\n'
                    '\n[data]\ndataset = "synthetic"\n')
    return path


def real_app_ready() -> str | None:
    """Why the real app cannot be tested yet (None when it can)."""
    if not (REPO / "crlsc_fl" / "flower" / "server.py").exists():
        return "crlsc_fl/flower/server.py does not exist yet"
    if not (REPO / "scenarios" / "ci.toml").exists():
        return "scenarios/ci.toml does not exist yet"
    if "serverapp" not in tomllib.loads((REPO / "pyproject.toml").read_text()).get("tool", {}).get("flwr", {}).get("app", {}).get("components", {}):
        return "[tool.flwr.app.components] missing in pyproject.toml"
    return None


@pytest.fixture(params=["real"])
def app_case(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path, list[str], Path]:
    """(app root, scenario, extra runner args, expected results base) for the fake and the real app."""
    if request.param == "fake":
        app = write_fake_app(tmp_path / "app")
        return app, write_scenario(tmp_path / "fake.toml", "fake"), ["--app", str(app)], app / "results"
    reason = real_app_ready()
    if reason:
        pytest.skip(reason)
    results = tmp_path / "results"
    # Each deployment message starts a fresh ClientApp process (~5 s): two topologies keep it short.
    extra = ["--set", f"scenario.results-dir={results}", "--set", "devices.num-devices=3",
             "--set", "scenario.topologies=cloud-edge,p2p", "--set", "stage2.devices=0"]
    return REPO, REPO / "scenarios" / "ci.toml", extra, results


def assert_all_gone(session: FlowerSession) -> None:
    pids = session.supervisor.all_pids()
    assert len(pids) >= 2, pids  # at least the SuperLink and what it started
    assert session.supervisor.alive() == [], [describe(p) for p in session.supervisor.running()]
    for proc in session.supervisor.tracked.values():
        assert not is_running(proc), describe(proc)
    assert not (session.home / "apps").exists()


# --------------------------------------------------------------------------- slow tests


def kill_supernode_when(sessions: list[FlowerSession], results: Path, name: str, ready, stop: threading.Event) -> None:  # type: ignore[no-untyped-def]
    """Background: SIGKILL SuperNode ``name`` once ``ready(metrics rows)`` is true."""
    while not stop.is_set():
        files = list(results.glob("*/*/metrics.jsonl"))
        lines = [json.loads(x) for x in files[0].read_text().splitlines() if x.strip()] if files else []
        if sessions and ready(lines):
            proc = dict(sessions[0].supervisor.started)[name]
            os.kill(proc.pid, signal.SIGKILL)
            return
        time.sleep(0.2)


@pytest.mark.slow
def test_deployment_three_supernodes_one_killed_mid_round(app_case, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """3 SuperNodes, P2P, 2 rounds; SuperNode 2 is killed when round 2 starts: the server stops
    waiting for it when Flower marks its node offline (or at the reply timeout), device 2's
    loss is recorded, and with scenario.min-success-fraction = 0.5 the run completes with the
    other two."""
    app, scenario, extra, results = app_case
    monkeypatch.setenv("CRLSC_STATE_DIR", str(tmp_path / "state"))  # the SuperNodes' device state
    extra += ["--set", "scenario.topologies=p2p", "--set", "scenario.reply-timeout=150",
              "--set", "scenario.min-success-fraction=0.5"]
    sessions: list[FlowerSession] = []
    stop = threading.Event()
    p2p_round_1_done = lambda rows: sum(r["topology"] == "p2p" for r in rows) >= 3  # noqa: E731
    killer = threading.Thread(target=kill_supernode_when, args=(sessions, results, "supernode-2", p2p_round_1_done, stop))
    killer.start()
    try:
        code = deploy.main([str(scenario), "--supernodes", "3", "--rounds", "2", "--timeout", "600", *extra],
                           sessions=sessions)
    finally:
        stop.set()
        killer.join()
    out = capsys.readouterr().out
    (session,) = sessions
    assert_all_gone(session)
    assert code == 0, out[-3000:]
    run_dirs = [p for p in results.glob("*/*") if p.is_dir()]
    assert len(run_dirs) == 1, run_dirs
    run_dir = run_dirs[0]
    assert f"run {run_dir.name}: finished:completed" in out
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    assert len(lines) == 2 * 3  # rounds x SuperNodes: the lost reply is a row too
    (lost,) = [x for x in lines if "error" in x]
    assert (lost["topology"], lost["round"], lost["device"]) == ("p2p", 2, 2)
    # Flower's heartbeat (~60 s) notices first; at the reply timeout we would give up ourselves
    assert lost["error_type"] in ("NodeUnavailable", "NoReply"), lost
    assert sorted({x["device"] for x in lines}) == [0, 1, 2]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["errors"] == 1
    assert set(summary["topologies"]) == {"p2p"} and summary["topologies"]["p2p"]["errors_by_round"] == {"1": 0, "2": 1}
    p2p = json.loads((run_dir / "communication-p2p.json").read_text())["transfers"]
    assert {t["tier"] for t in p2p} == {"d2d"} and len(p2p) == 3 * 2  # ring of 3: 2 peers each, in round 2
    assert f"device 2 (p2p, round 2): {lost['error_type']}" in out


@pytest.mark.slow
def test_deployment_reports_serverapp_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = write_fake_app(tmp_path / "app")
    scenario = write_scenario(tmp_path / "fail.toml", "fail-on-purpose", devices=2, rounds=1)
    sessions: list[FlowerSession] = []
    code = deploy.main([str(scenario), "--supernodes", "2", "--timeout", "240", "--app", str(app)], sessions=sessions)
    out = capsys.readouterr().out
    assert code == 1, out[-3000:]
    assert "finished:failed" in out
    assert_all_gone(sessions[0])


@pytest.mark.slow
def test_deployment_tls_auth_run_has_the_insecure_runs_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real app on 2 SuperNodes, 1 cloud-edge round (the SKB crosses the link): over TLS with
    registered node keys (``--keys``) it completes with the very results of the plaintext run."""
    reason = real_app_ready()
    if reason:
        pytest.skip(reason)
    tiny = ["--supernodes", "2", "--rounds", "1", "--timeout", "600", "--set", "devices.num-devices=2",
            "--set", "scenario.topologies=cloud-edge", "--set", "stage2.devices=0", "--set", "devices.architectures=resnet18:1.0",
            "--set", "devices.width=0.25", "--set", "data.samples-per-device=32", "--set", "data.test-samples=50",
            "--set", "train.batch-size=16"]
    make_keys(tmp_path / "keys", 2)
    runs: dict[str, tuple[int, str, FlowerSession, Path]] = {}
    for name, security in (("insecure", ["--insecure"]), ("secure", ["--keys", str(tmp_path / "keys")])):
        sessions: list[FlowerSession] = []
        code = deploy.main([str(REPO / "scenarios" / "ci.toml"), *tiny, *security, "--set", f"scenario.results-dir={tmp_path / name}"],
                           sessions=sessions)
        (run_dir,) = [p for p in (tmp_path / name).glob("*/*") if p.is_dir()]
        runs[name] = (code, capsys.readouterr().out, sessions[0], run_dir)
    for name, (code, out, session, _) in runs.items():
        assert code == 0, f"{name}: {out[-3000:]}"
        assert_all_gone(session)
    (_, plain_out, plain, plain_dir), (_, secure_out, secure, secure_dir) = runs["insecure"], runs["secure"]
    assert "--insecure: plaintext HTTP" in plain_out and "SuperLink (plaintext)" in plain_out
    assert "TLS (own CA) and SuperNode authentication" in secure_out and "SuperLink (TLS)" in secure_out
    superlink = dict(secure.supervisor.started)["superlink"].args
    assert "--enable-supernode-auth" in superlink and "--insecure" not in superlink
    assert all("--insecure" not in proc.args for name, proc in secure.supervisor.started if name.startswith("supernode"))
    assert "--insecure" in dict(plain.supervisor.started)["superlink"].args
    rows = [json.loads(x) for x in (secure_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    assert len(rows) == 2 and all("knn_top1" in r and r["bytes_received"] > 0 for r in rows)  # the SKB reached both devices
    differences = {file: diff for file, diff in compare(plain_dir, secure_dir) if diff is not None}
    assert differences == {}
