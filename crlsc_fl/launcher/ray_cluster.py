"""Running the simulation on an existing Ray cluster (``crlsc-fl run --ray-address HOST:PORT``).

Flower 1.42's simulation calls ``ray.init(runtime_env={"env_vars": {"PYTHONPATH": ...}},
include_dashboard=False, **init_args)`` in the process it starts for the run
(``flwr/server/superlink/fleet/vce/backend/raybackend.py``); without an address Ray starts a
private instance, with ``$RAY_ADDRESS`` set it joins that cluster (``ray/_private/worker.py``).
On an existing cluster Ray refuses ``num_cpus`` / ``num_gpus``, so the federation config must
not carry ``init-args-num-cpus`` / ``init-args-num-gpus`` (a node's size is set by ``ray start
--num-cpus``). Flower sizes its actor pool per node: ``floor(node CPUs / client-resources-num-cpus)``
actors on each alive node (``flwr/simulation/ray_transport/ray_actor.py``), and any actor may
run any device in any round, so a device's state must be where every node can read it.

Checked before the data is loaded (:func:`check_address`: the form, the federation settings, a
TCP connect to the head's GCS port) and before Flower starts (:func:`check_cluster`: ``ray.init``
in a subprocess with a timeout, which also proves the Ray and Python versions match; one client
fits on some node; every node imports the ClientApp, sees the data and the device-state root).

The probe is this module run as a script, ``python -m crlsc_fl.launcher.ray_cluster ADDRESS
REQUEST_JSON`` (:func:`probe_main`): it joins the cluster as a driver and reports, as one
``CRLSC-PROBE <json>`` line, its Ray version, the CPUs no job holds, and each alive node with
its CPUs and GPUs and what a ClientApp there would find (:func:`look_around`: whether
``crlsc_fl.flower.client`` imports, which of the requested paths are missing, and whether the
marker file written by the launcher into the device-state root is visible, i.e. whether that
directory is shared). The per-node check runs as a zero-CPU task pinned to each node, in a
worker started by that node's raylet, with the environment the ClientApps get. It runs in a
subprocess bounded by a timeout because ``ray.init`` retries an unresponsive GCS for minutes;
as ``__main__`` there, :func:`look_around` is sent to the nodes by value (they need no crlsc_fl
to report that they lack it).

The ClientApps run in Ray worker processes that the cluster's raylets start: they inherit
the environment of ``ray start``, not the launcher's. The launcher's ``CRLSC_*`` paths reach
them as the job's runtime env vars (:func:`driver_env`: ``RAY_JOB_CONFIG_JSON_ENV_VAR``, the
channel ``ray job submit`` uses; Ray merges it per variable with the ``PYTHONPATH`` Flower sets).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crlsc_fl import environment
from crlsc_fl.environment import RAY_ADDRESS_ENV, RAY_JOB_CONFIG_ENV, STATE_DIR_ENV
from crlsc_fl.launcher.processes import FlowerError
from crlsc_fl.launcher.report import device_state_root

CONNECT_TIMEOUT = 5.0  # seconds for the TCP connect to the head's GCS port
PROBE_TIMEOUT = 120.0  # seconds for ray.init, and a worker on every node importing the ClientApp
LOCAL = ("", "local")  # --ray-address values that mean "start a private Ray instance"
REFUSED_INIT_ARGS = ("init-args-num-cpus", "init-args-num-gpus")
PROBE_MODULE = "crlsc_fl.launcher.ray_cluster"  # this module, run as the probe (probe_main)
PREFIX = "CRLSC-PROBE "  # marks the probe's one line of output
CLIENT_MODULE = "crlsc_fl.flower.client"  # what Flower's actors import to run the ClientApp


class RayClusterError(FlowerError):
    """The Ray cluster named by ``--ray-address`` / ``$RAY_ADDRESS`` cannot be used; says why."""


@dataclass(frozen=True)
class RayTarget:
    """A cluster the user named: its address, and how (``--ray-address`` or ``$RAY_ADDRESS``)."""

    address: str
    source: str

    def __str__(self) -> str:
        return f"{self.source}={self.address}"


@dataclass(frozen=True)
class RayNode:
    """One alive node of the cluster, as Flower's actor pool sees it, and what a ClientApp there
    found (``import_error``, ``missing`` paths, ``shared``: sees the launcher's marker file)."""

    node_id: str
    ip: str
    cpus: float
    gpus: float
    host: str = ""
    import_error: str = ""
    missing: tuple[str, ...] = ()
    shared: bool = True

    def problems(self) -> list[str]:
        out = [f"cannot import the ClientApp ({self.import_error}): install this code there (pip install -e .)"] \
            if self.import_error else []
        out += [f"has no {path}" for path in self.missing]
        if not self.shared and not self.missing:
            out.append("sees another directory under the device-state root: it must be one directory shared by all nodes")
        return out


@dataclass(frozen=True)
class RayCluster:
    """What the probe found at ``target``."""

    target: RayTarget
    ray_version: str
    nodes: tuple[RayNode, ...]
    free_cpus: float = 0.0  # CPUs no job holds when probed (Flower counts every CPU, free or not)

    def actors(self, num_cpus: float, num_gpus: float = 0.0) -> int:
        """Actors Flower will start: per node ``floor(CPUs / num_cpus)`` (and GPUs, if asked)."""
        total = 0
        for node in self.nodes:
            fit = int(node.cpus // num_cpus)
            if num_gpus > 0:
                fit = min(fit, int(node.gpus // num_gpus))
            total += fit
        return total

    def describe(self) -> str:
        cpus = sum(n.cpus for n in self.nodes)
        gpus = sum(n.gpus for n in self.nodes)
        return (f"Ray {self.ray_version} cluster at {self.target.address} ({self.target.source}): {len(self.nodes)} nodes, "
                f"{cpus:g} CPUs ({self.free_cpus:g} free), {gpus:g} GPUs")


def requested_target(option: str | None, environ: Mapping[str, str] | None = None) -> RayTarget | None:
    """``--ray-address`` if given (``''`` or ``local``: no cluster, even with ``$RAY_ADDRESS``
    set), else ``$RAY_ADDRESS``; None: Flower's private Ray instance."""
    if option is not None:
        address, source = option.strip(), "--ray-address"
    else:
        address, source = environment.ray_address(environ), f"${RAY_ADDRESS_ENV}"
    return None if address in LOCAL else RayTarget(address, source)


def split_address(target: RayTarget) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) of the head's GCS -> (host, port); ``ValueError`` naming it otherwise."""
    address, what = target.address, f"{target.source}={target.address!r}"
    if "://" in address:
        raise ValueError(f"{what}: Ray Client addresses (ray://...) are not supported; run crlsc-fl on a node of the "
                         "cluster and give the head's GCS address HOST:PORT (e.g. 10.0.0.5:6379)")
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or any(c.isspace() for c in address) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what}: expected HOST:PORT of the Ray head's GCS as printed by `ray start --head` "
                         "(e.g. 10.0.0.5:6379; port 1-65535)")
    return host, int(port)


def check_reachable(target: RayTarget, timeout: float = CONNECT_TIMEOUT) -> None:
    """A TCP connect to the head's GCS port; ``RayClusterError`` naming the address if it fails.
    (``ray.init`` itself retries an unreachable GCS for minutes.)"""
    host, port = split_address(target)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except socket.gaierror as err:
        why = f"cannot resolve host {host!r} ({err.strerror})"
    except TimeoutError:
        why = f"no answer within {timeout:g}s"
    except OSError as err:
        why = err.strerror or str(err)
    raise RayClusterError(f"{target}: cannot reach a Ray head there: {why}. Start one with "
                          f"`ray start --head --port {port} --num-cpus N`, or fix the address")


def check_federation_settings(settings: Mapping[str, str], target: RayTarget) -> None:
    """``init-args-num-cpus`` / ``-gpus`` are refused on a cluster (Ray raises on them); ``ValueError``."""
    for key in REFUSED_INIT_ARGS:
        if key in settings:
            raise ValueError(f"--federation-config {key}={settings[key]}: not allowed with a Ray cluster ({target.source}): "
                             "Ray refuses num_cpus/num_gpus when joining an existing cluster; limit each node with "
                             "`ray start --num-cpus N` instead")


def check_address(target: RayTarget, settings: Mapping[str, str]) -> None:
    """What can be checked at once: the settings and the address's form (``ValueError``: exit 2),
    and that the head's port answers (``RayClusterError``: exit 3)."""
    check_federation_settings(settings, target)
    check_reachable(target)


def probe(target: RayTarget, paths: Iterable[str] = (), marker: str = "", env_vars: Mapping[str, str] | None = None,
          check_nodes: bool = True, timeout: float = PROBE_TIMEOUT) -> RayCluster:
    """Join the cluster from a subprocess (bounded by ``timeout``, :func:`probe_main`) and list its
    alive nodes, with what a ClientApp on each finds (``check_nodes``)."""
    request = {"paths": list(paths), "marker": marker, "env_vars": dict(env_vars or {}), "check_nodes": check_nodes}
    argv = [sys.executable, "-m", PROBE_MODULE, target.address, json.dumps(request)]
    env = {k: v for k, v in environment.current().items() if k not in (RAY_ADDRESS_ENV, RAY_JOB_CONFIG_ENV)}
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RayClusterError(f"{target}: no answer from the cluster within {timeout:g}s (the port answers, but it is "
                              "not a Ray GCS, or a node cannot start a worker)") from None
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(PREFIX)), None)
    if done.returncode != 0 or line is None:
        last = "\n".join(done.stderr.strip().splitlines()[-6:])
        raise RayClusterError(f"{target}: ray.init failed (exit {done.returncode}); this machine must be a node of that "
                              f"cluster, with the same Ray and Python versions:\n{last}")
    found = json.loads(line[len(PREFIX):])
    nodes = tuple(
        RayNode(n["id"], n["ip"], float(n["cpus"]), float(n["gpus"]), n.get("host", ""), n.get("import_error", ""),
                tuple(n.get("missing", ())), bool(n.get("shared", True)))
        for n in found["nodes"]
    )
    return RayCluster(target, found["ray"], nodes, float(found.get("free_cpus", 0.0)))


def check_fits(cluster: RayCluster, settings: Mapping[str, str]) -> int:
    """Actors the cluster holds for the client resources in ``settings``; ``ValueError`` if none."""
    cpus = float(settings.get("client-resources-num-cpus", 1))
    gpus = float(settings.get("client-resources-num-gpus", 0))
    actors = cluster.actors(cpus, gpus)
    if actors == 0:
        sizes = ", ".join(f"{n.cpus:g} CPUs/{n.gpus:g} GPUs" for n in cluster.nodes) or "no alive node"
        raise ValueError(f"--federation-config client-resources-num-cpus={cpus:g} client-resources-num-gpus={gpus:g}: "
                         f"no node of the Ray cluster at {cluster.target.address} ({cluster.target.source}) fits one "
                         f"client ({sizes}); lower them or start nodes with more `ray start --num-cpus`")
    return actors


def check_cluster(target: RayTarget, settings: Mapping[str, str], worker_env: Mapping[str, str], paths: Iterable[str] = (),
                  timeout: float = PROBE_TIMEOUT) -> tuple[RayCluster, int]:
    """The cluster as the run will use it: (what was found, actors Flower will start).

    Every node must import the ClientApp, see ``paths`` (the data directory, the device-state
    root) and the same device-state root: a marker file written here must be visible there.
    ``RayClusterError`` (exit 3) names each node's problem; ``ValueError`` (exit 2) if no client fits.
    """
    root = Path(worker_env[STATE_DIR_ENV])
    root.mkdir(parents=True, exist_ok=True)
    marker = root / f".crlsc-node-check-{os.getpid()}-{time.time_ns()}"
    marker.write_text("written by crlsc-fl run: is this directory shared by every Ray node?\n")
    try:
        cluster = probe(target, [*paths, str(root)], str(marker), worker_env, timeout=timeout)
    finally:
        marker.unlink(missing_ok=True)
    problems = [f"node {n.node_id[:12]} ({n.host or n.ip}) {problem}" for n in cluster.nodes for problem in n.problems()]
    if problems:
        raise RayClusterError(f"{target}: not every node can run the devices:\n  " + "\n  ".join(problems))
    return cluster, check_fits(cluster, settings)


def worker_env(plan_env: Mapping[str, str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the ClientApps on the cluster's nodes need (they do not inherit the
    launcher's): the user's absolute paths ``plan_env``, and the device-state root the ServerApp uses."""
    environ = environment.current() if environ is None else environ
    return {**plan_env, STATE_DIR_ENV: str(device_state_root({**environ, **plan_env}))}


def driver_env(address: str, worker: Mapping[str, str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment entries for the Flower processes: ``RAY_ADDRESS`` (the simulation's
    ``ray.init()`` joins the cluster) and ``worker`` (absolute ``CRLSC_*`` paths) as the
    job's runtime env vars, so the ClientApps on every node see them. A job config already in
    ``environ`` (crlsc-fl started by ``ray job submit``) keeps its other settings."""
    job = environment.ray_job_config(environ)
    runtime_env = job.get("runtime_env") or {}
    job["runtime_env"] = {**runtime_env, "env_vars": {**runtime_env.get("env_vars", {}), **worker}}
    return {RAY_ADDRESS_ENV: address, RAY_JOB_CONFIG_ENV: json.dumps(job)}


def look_around(paths: list[str], marker: str) -> dict[str, Any]:
    """What a worker on this node sees (runs on the node; sent by value, needs no crlsc_fl)."""
    import importlib
    import os
    import socket

    found: dict[str, Any] = {"host": socket.gethostname(), "missing": [p for p in paths if not os.path.exists(p)]}
    found["shared"] = os.path.exists(marker) if marker else True
    try:
        importlib.import_module(CLIENT_MODULE)
        found["import_error"] = ""
    except Exception as err:  # noqa: BLE001  (reported for the user, whatever it is)
        found["import_error"] = f"{type(err).__name__}: {err}"
    return found


def survey(request: dict[str, Any]) -> dict[str, Any]:
    """The cluster as the simulation will see it (see the module docstring)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n["Alive"]]
    look = ray.remote(num_cpus=0)(look_around)
    pending = []
    if request.get("check_nodes", True):
        for node in nodes:
            strategy = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
            pending.append(look.options(scheduling_strategy=strategy).remote(request["paths"], request["marker"]))
    found = ray.get(pending) if pending else [{} for _ in nodes]
    return {
        "ray": ray.__version__,
        "free_cpus": ray.available_resources().get("CPU", 0.0),  # CPUs held by no job's actors or tasks
        "nodes": [
            {"id": n["NodeID"], "ip": n["NodeManagerAddress"], "cpus": n["Resources"].get("CPU", 0.0),
             "gpus": n["Resources"].get("GPU", 0.0), **seen}
            for n, seen in zip(nodes, found)
        ],
    }


def probe_main(argv: list[str]) -> int:
    """``python -m crlsc_fl.launcher.ray_cluster ADDRESS REQUEST_JSON``: print the ``CRLSC-PROBE`` line."""
    address, request = argv[0], json.loads(argv[1])
    import ray

    runtime_env = {"env_vars": request["env_vars"]} if request.get("env_vars") else None
    ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR, include_dashboard=False, runtime_env=runtime_env)
    try:
        print(PREFIX + json.dumps(survey(request)), flush=True)
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(probe_main(sys.argv[1:]))
