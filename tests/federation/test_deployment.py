"""End-to-end tests of the Flower runners (:mod:`crlsc_fl.deploy`, :mod:`crlsc_fl.launch`).

The slow tests start real Flower processes on loopback and run against two apps:

* ``fake``: a tiny throwaway Flower app written to ``tmp_path`` whose run config has exactly
  the keys of :class:`crlsc_fl.config.ScenarioConfig`; its ServerApp sends one message per node
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

from crlsc_fl import deploy, flwr_cli, launch

REPO = Path(__file__).resolve().parents[2]

# Captured from `flwr ls <conn> --format json` (flwr 1.42.0) after one completed and one
# crashed simulation run.
LS_SAMPLE = """{
  "success": true,
  "runs": [
    {
      "run-id": "2296371772530611739",
      "federation-id": "@none/default",
      "fab-id": "tester/flapp",
      "fab-name": "flapp",
      "fab-version": "0.1.0",
      "fab-hash": "4fac7d94a7f8a0b7e3d6c1bd0b7f4a3c2d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a",
      "status": "finished:failed",
      "status-details": "Simulation failed with exception: requested failure",
      "elapsed": 12.047261,
      "pending-at": "2026-11-28 15:19:20Z",
      "starting-at": "2026-11-28 15:19:20Z",
      "running-at": "2026-11-28 15:19:22Z",
      "finished-at": "2026-11-28 15:19:34Z",
      "network-traffic": {"inbound-bytes": 0, "outbound-bytes": 0, "total-bytes": 0},
      "compute-time": {"serverapp-seconds": 12.047261, "clientapp-seconds": 0.0, "total-seconds": 12.047261}
    },
    {
      "run-id": "7850792257349967335",
      "federation-id": "@none/default",
      "fab-id": "tester/flapp",
      "fab-name": "flapp",
      "fab-version": "0.1.0",
      "fab-hash": "08b891d775c532d35c8f4cb2a86285f2e89c07e5f5a23f570fc04659f369d1b1",
      "status": "finished:completed",
      "status-details": "N/A",
      "elapsed": 15.565116,
      "pending-at": "2026-11-28 15:18:56Z",
      "starting-at": "2026-11-28 15:18:56Z",
      "running-at": "2026-11-28 15:18:58Z",
      "finished-at": "2026-11-28 15:19:13Z",
      "network-traffic": {"inbound-bytes": 0, "outbound-bytes": 0, "total-bytes": 0},
      "compute-time": {"serverapp-seconds": 15.565116, "clientapp-seconds": 7.95530637000013,
                       "total-seconds": 23.52042237000013}
    }
  ]
}
"""


# --------------------------------------------------------------------------- fast unit tests


def test_parse_ls_json_statuses() -> None:
    runs = {r.run_id: r for r in flwr_cli.parse_ls_json(LS_SAMPLE)}
    ok, bad = runs["7850792257349967335"], runs["2296371772530611739"]
    assert ok.status == "finished:completed" and ok.finished and ok.succeeded
    assert bad.status == "finished:failed" and bad.finished and not bad.succeeded
    assert "requested failure" in bad.details
    assert max(runs.values(), key=lambda r: r.pending_at) is bad  # newest run


def test_parse_ls_json_tolerates_leading_text_and_rejects_failure() -> None:
    assert len(flwr_cli.parse_ls_json("📄 Listing all runs...\n" + LS_SAMPLE)) == 2
    with pytest.raises(ValueError):
        flwr_cli.parse_ls_json('{"success": false, "error-message": "no such run"}')
    with pytest.raises(ValueError):
        flwr_cli.parse_ls_json("")


def test_running_run_is_not_finished() -> None:
    text = json.dumps({"success": True, "runs": [{"run-id": "5", "status": "running", "status-details": "N/A"}]})
    (run,) = flwr_cli.parse_ls_json(text)
    assert not run.finished and not run.succeeded


def test_outcome_exit_codes() -> None:
    def outcome(status: str | None, timed_out: bool = False) -> flwr_cli.Outcome:
        info = flwr_cli.RunInfo("1", status) if status else None
        return flwr_cli.Outcome(flwr_cli.StreamResult(0, "1", timed_out, 1.0, 0.5), info)

    assert outcome("finished:completed").exit_code == 0
    assert outcome("finished:failed").exit_code == 1
    assert outcome("finished:stopped").exit_code == 1
    assert outcome(None).exit_code == 1 and outcome(None).status == "unknown"
    assert outcome("running", timed_out=True).exit_code == 124


def test_run_id_from_flwr_run_output() -> None:
    assert flwr_cli.find_run_id("\x1b[32mSuccessfully started run 7850792257349967335\x1b[0m") == "7850792257349967335"
    assert flwr_cli.find_run_id("INFO : Starting logstream for run_id `785`") is None


def test_overrides_merge_into_a_copy(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text('[scenario]\nname = "x"\nrounds = 5\n')
    assert flwr_cli.merged_run_config(scenario, {}, tmp_path / "m.toml") == scenario.resolve()
    values = flwr_cli.parse_overrides(["scenario.rounds=2", "scenario.results-dir=/tmp/r", "train.lr=0.1"])
    merged = tomllib.loads(flwr_cli.merged_run_config(scenario, values, tmp_path / "m.toml").read_text())
    assert merged == {"scenario": {"name": "x", "rounds": 2, "results-dir": "/tmp/r"}, "train": {"lr": 0.1}}
    assert tomllib.loads(scenario.read_text())["scenario"]["rounds"] == 5


def test_federation_config_merge() -> None:
    text = flwr_cli.federation_config({"num-supernodes": 3, "client-resources-num-cpus": 1}, "client-resources-num-cpus=2 x=1")
    assert text == "num-supernodes=3 client-resources-num-cpus=2 x=1"


def test_invalid_scenario_exits_2_before_starting_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nname = "x"\nrounds = 0\n')
    assert launch.main([str(bad), "--app", str(tmp_path)]) == 2
    assert "scenario.rounds" in capsys.readouterr().err
    assert deploy.main([str(bad), "--app", str(tmp_path)]) == 2
    assert deploy.main([str(tmp_path / "missing.toml"), "--app", str(tmp_path)]) == 2
    ok = tmp_path / "ok.toml"
    ok.write_text('[scenario]\nname = "x"\n')
    assert deploy.main([str(ok), "--set", "no.such-key=1", "--app", str(tmp_path)]) == 2
    assert "no.such-key" in capsys.readouterr().err
    assert not (tmp_path / ".flwr").exists()


STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)          # like Ray's agents: needs SIGKILL
subprocess.Popen(["setsid", "sleep", "300"])              # a grandchild in its own session
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
print("ready", flush=True)
time.sleep(300)
"""


def test_supervisor_stops_everything_it_caused(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    bystander = subprocess.Popen(["sleep", "300"])  # not started through the supervisor: must survive
    sup = flwr_cli.Supervisor(tmp_path, scan_interval=0.1)
    try:
        proc = sup.start("stubborn", [sys.executable, "-c", STUBBORN], dict(os.environ))
        deadline = time.monotonic() + 20
        while "ready" not in sup.log_path("stubborn").read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        sup.scan()
        assert len(sup.alive()) == 3, [flwr_cli.cmdline(p) for p in sup.alive()]
        assert len(sup.sessions) == 2  # ours and the setsid grandchild's
        assert bystander.pid not in sup.all_pids()
        assert sup.stop(grace=1.0) == []
        assert proc.poll() is not None and sup.alive() == []
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
        for pid in sup.alive():
            os.kill(pid, 9)


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
    from crlsc_fl.config import ScenarioConfig

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


def assert_all_gone(session: flwr_cli.FlowerSession) -> None:
    pids = session.supervisor.all_pids()
    assert len(pids) >= 2, pids  # at least the SuperLink and what it started
    assert session.supervisor.alive() == [], [flwr_cli.cmdline(p) for p in session.supervisor.alive()]
    for pid in pids:
        stat = flwr_cli.read_stat(pid)
        assert stat is None or stat.state in ("Z", "X") or stat.start != session.supervisor.tracked[pid], pid
    assert not (session.home / "apps").exists()


# --------------------------------------------------------------------------- slow tests


def kill_supernode_when(sessions: list[flwr_cli.FlowerSession], results: Path, name: str, ready, stop: threading.Event) -> None:  # type: ignore[no-untyped-def]
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
    sessions: list[flwr_cli.FlowerSession] = []
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
    sessions: list[flwr_cli.FlowerSession] = []
    code = deploy.main([str(scenario), "--supernodes", "2", "--timeout", "240", "--app", str(app)], sessions=sessions)
    out = capsys.readouterr().out
    assert code == 1, out[-3000:]
    assert "finished:failed" in out
    assert_all_gone(sessions[0])


def test_no_flower_home_leaks_into_git(tmp_path: Path) -> None:
    home = flwr_cli.make_flwr_home(tmp_path, "unit")
    assert home.parent == tmp_path / ".flwr"
    assert flwr_cli.make_flwr_home(tmp_path, "unit") != home  # same second, same pid: still fresh
    assert (tmp_path / ".flwr" / ".gitignore").read_text().strip().endswith("*")
    env = flwr_cli.flwr_env(home, tmp_path, base={"PATH": "/usr/bin", "RAY_ADDRESS": "x"})
    assert env["FLWR_HOME"] == str(home) and env["CRLSC_PROJECT_ROOT"] == str(tmp_path)
    assert env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] == "1" and env["FLWR_TELEMETRY_ENABLED"] == "0"
    assert "RAY_ADDRESS" not in env
    assert os.path.isabs(env["FLWR_HOME"])
