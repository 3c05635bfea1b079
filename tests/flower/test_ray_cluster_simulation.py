"""End to end on an existing Ray cluster: two ``ray start`` nodes of 1 CPU each on this machine
(own temp dir and ports, a scrubbed environment), a small scenario through ``crlsc-fl run
--ray-address``, against the same scenario on Flower's private Ray instance.

Every draw is seeded by scenario, device and round, so the cluster run must write the same
results while both nodes run devices: each device's loss and kNN exactly (same machine, one
thread per device), every file of the run (metrics, participation, ledgers, summary) as
``benchmarks.same_results`` compares them (floats within a relative 1e-12: aggregates are
summed in reply order). The nodes are started with
``CRLSC_STATE_DIR`` pointing elsewhere: the devices must still keep their state where the
launcher's ServerApp looks (the job's runtime env), or the footprint and the cleanup would miss it.
The cluster is stopped by PID (never ``ray stop``, which ends every Ray process of the machine),
also when a test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benchmarks.same_results import compare
from crlsc_fl import launch
from crlsc_fl.launcher.environment import free_port
from crlsc_fl.launcher.polling import poll_until
from crlsc_fl.launcher.processes import Supervisor
from crlsc_fl.launcher.ray_cluster import RayCluster, RayClusterError, RayTarget, check_cluster, probe
from crlsc_fl.launcher.session import FlowerSession

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "scenarios" / "ci.toml"
# P2P: round 1 trains alone, round 2 with the peers' PKBs relayed by the server, each device from
# the state it stored in round 1, on whichever node runs it then. 4 devices, small encoders.
SETTINGS = {
    "devices.num-devices": 4, "scenario.topologies": "p2p", "scenario.rounds": 2, "stage2.devices": 0,
    "devices.architectures": "resnet18:1.0", "devices.width": 0.5,
}
COMPARED = ("loss", "knn_top1", "knn_top5", "bytes_received", "bytes_sent")  # per device: equal to the last bit


@dataclass
class LocalCluster:
    """A Ray cluster of ``ray start --block`` processes on this machine, stopped by PID."""

    address: str
    supervisor: Supervisor
    info: RayCluster


def node_options(temp_dir: Path) -> list[str]:
    """One node of 1 CPU: its own temp dir and ports (two nodes share this machine)."""
    ports = {option: free_port() for option in ("--node-manager-port", "--object-manager-port", "--metrics-export-port",
                                                "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
                                                "--runtime-env-agent-port")}
    return ["--num-cpus", "1", "--num-gpus", "0", "--block", "--disable-usage-stats", "--temp-dir", str(temp_dir),
            "--min-worker-port", "0", "--max-worker-port", "0", "--object-store-memory", str(256 * 2**20),
            *(str(a) for item in ports.items() for a in item)]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Head + one worker node, 1 CPU each; torn down (every process it caused, by PID) after the module."""
    logs = tmp_path_factory.mktemp("ray-cluster")
    temp = Path(tempfile.mkdtemp(prefix="crlsc-ray-", dir="/tmp"))  # Ray's socket paths must stay short
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRLSC_", "RAY_"))}
    env.update(CRLSC_STATE_DIR=str(logs / "node-state"), CRLSC_CACHE_DIR=str(logs / "node-cache"))  # must not be used
    ray = str(Path(sys.executable).parent / "ray")
    supervisor = Supervisor(logs)
    port = free_port()
    address = f"127.0.0.1:{port}"

    def cluster() -> RayCluster | None:
        if (exited := supervisor.exited()) is not None:
            raise RuntimeError(f"ray start ({exited[0]}) exited: see {supervisor.log_path(exited[0])}")
        try:
            return probe(RayTarget(address, "test"), check_nodes=False, timeout=60)
        except RayClusterError:
            return None  # not up yet

    try:
        supervisor.start("head", [ray, "start", "--head", "--port", str(port), "--include-dashboard=false",
                                  "--ray-client-server-port", str(free_port()), *node_options(temp / "n0")], env)
        poll_until(cluster, timeout=120, interval=1.0, what="the Ray head", done=lambda found: found is not None)
        supervisor.start("worker", [ray, "start", "--address", address, *node_options(temp / "n1")], env)
        info = poll_until(cluster, timeout=120, interval=1.0, what="2 Ray nodes",
                          done=lambda found: found is not None and len(found.nodes) == 2)
        assert info is not None
        yield LocalCluster(address, supervisor, info)
    finally:
        left = supervisor.stop()
        shutil.rmtree(temp, ignore_errors=True)
        assert left == [], f"Ray processes survived SIGKILL: {left}"


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """The launcher's own state and cache directories (not the nodes')."""
    tmp = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RAY_ADDRESS", raising=False)
        patch.setenv("CRLSC_STATE_DIR", str(tmp / "state"))
        patch.setenv("CRLSC_CACHE_DIR", str(tmp / "cache"))
        yield {"tmp": tmp, "state": tmp / "state"}


def run(results: Path, *extra: str) -> tuple[int, Path | None, list[FlowerSession]]:
    overrides = {**SETTINGS, "scenario.results-dir": str(results)}
    args = [a for k, v in overrides.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    sessions: list[FlowerSession] = []
    code = launch.main([str(SCENARIO), "--timeout", "600", *args, *extra], sessions=sessions)
    run_dirs = list((results / "ci").iterdir()) if (results / "ci").is_dir() else []
    return code, (run_dirs[0] if len(run_dirs) == 1 else None), sessions


def rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_ray_cluster_run_has_the_single_node_results_and_uses_both_nodes(
    ray_cluster: LocalCluster, paths: dict[str, Path], capsys: pytest.CaptureFixture[str],
) -> None:
    code, single, _ = run(paths["tmp"] / "single")
    out = capsys.readouterr().out
    assert code == 0 and single is not None, out[-4000:]

    code, clustered, sessions = run(paths["tmp"] / "cluster", "--ray-address", ray_cluster.address)
    out = capsys.readouterr().out
    assert code == 0 and clustered is not None, out[-4000:]
    assert f"cluster at {ray_cluster.address} (--ray-address): 2 nodes, 2 CPUs (2 free), 0 GPUs: 2 devices at a time" in out
    assert sessions[0].supervisor.alive() == []
    target = RayTarget(ray_cluster.address, "test")  # the run's actors are gone with it: the next run finds the CPUs free
    poll_until(lambda: probe(target, check_nodes=False).free_cpus, timeout=60, interval=2.0, what="the cluster's CPUs",
               done=lambda free: free == 2)

    nodes = {n.node_id for n in ray_cluster.info.nodes}
    cluster_rows, single_rows = rows(clustered), rows(single)
    assert len(cluster_rows) == 2 * 4 and not [r for r in cluster_rows if "error" in r]
    assert {r["node"] for r in cluster_rows} == nodes  # both nodes ran devices, nothing else did
    assert len({r["node"] for r in single_rows}) == 1 and not {r["node"] for r in single_rows} & nodes
    summary = json.loads((clustered / "summary.json").read_text())
    by_node = summary["topologies"]["p2p"]["device_rounds_by_node"]
    assert set(by_node) == nodes and sum(by_node.values()) == len(cluster_rows)
    assert summary["cpu_use"]["cores"] == 2.0  # the cluster's CPUs (here also this machine's)

    key = ("topology", "round", "device")
    expected = {tuple(r[k] for k in key): {m: r[m] for m in COMPARED} for r in single_rows}
    assert {tuple(r[k] for k in key): {m: r[m] for m in COMPARED} for r in cluster_rows} == expected
    assert all(difference is None for _, difference in compare(single, clustered)), compare(single, clustered)

    # the devices kept their state under the launcher's CRLSC_STATE_DIR, not the nodes' own
    assert summary["footprint"]["device_state_bytes"] > 0  # the ServerApp saw it after every round
    state = paths["state"] / clustered.name
    assert state.is_dir() and not list(state.glob("*/device-*"))  # ... and removed it once each topology was done
    node_state = ray_cluster.supervisor.log_dir / "node-state"
    assert not node_state.exists() or not any(node_state.iterdir())


@pytest.mark.slow
def test_ray_cluster_from_the_environment_is_probed_before_flower_starts(
    ray_cluster: LocalCluster, paths: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from crlsc_fl.launcher.cli import build_parser, plan_run
    from crlsc_fl.launcher.modes import SIMULATION

    monkeypatch.setenv("RAY_ADDRESS", ray_cluster.address)
    args = build_parser(SIMULATION, "t").parse_args([str(SCENARIO), "--federation-config", "client-resources-num-cpus=2"])
    with pytest.raises(ValueError, match=r"client-resources-num-cpus=2 .*no node of the Ray cluster at .*\(\$RAY_ADDRESS\) "
                                         r"fits one client \(1 CPUs/0 GPUs, 1 CPUs/0 GPUs\)"):
        plan_run(SIMULATION, args)  # the nodes' sizes, read from the cluster before Flower starts
    local = plan_run(SIMULATION, build_parser(SIMULATION, "t").parse_args([str(SCENARIO), "--ray-address", ""]))
    shutil.rmtree(local.tmp, ignore_errors=True)
    assert local.ray is None  # '' overrides $RAY_ADDRESS: Flower's private Ray instance


@pytest.mark.slow
def test_ray_cluster_check_names_each_node_that_misses_a_path(ray_cluster: LocalCluster, tmp_path: Path) -> None:
    worker = {"CRLSC_STATE_DIR": str(tmp_path / "state")}
    with pytest.raises(RayClusterError) as err:
        check_cluster(RayTarget(ray_cluster.address, "--ray-address"), {}, worker, ["/no/such/data"])
    lines = str(err.value).splitlines()
    assert lines[0] == f"--ray-address={ray_cluster.address}: not every node can run the devices:"
    assert sorted(line.split(" (")[0].strip() for line in lines[1:]) == sorted(f"node {n.node_id[:12]}" for n in ray_cluster.info.nodes)
    assert all(line.endswith("has no /no/such/data") for line in lines[1:])
    assert list((tmp_path / "state").iterdir()) == []  # the marker file is gone
