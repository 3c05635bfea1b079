"""``python -m crlsc_fl.launcher.ray_probe ADDRESS REQUEST_JSON``: join a Ray cluster as a
driver and report, as one ``CRLSC-PROBE <json>`` line, its Ray version, the CPUs no job holds,
and each alive node with its CPUs and GPUs and what a ClientApp there would find: whether ``crlsc_fl.flower.client``
imports, which of the requested paths are missing, and whether the marker file (written by
the launcher into the device-state root) is visible, i.e. whether that directory is shared.

Run in a subprocess by :func:`crlsc_fl.launcher.ray_cluster.probe`, which bounds it with a
timeout (``ray.init`` retries an unresponsive GCS for minutes). The per-node check runs as a
zero-CPU task pinned to each node, in a worker started by that node's raylet, with the
environment the ClientApps get (the launcher's ``CRLSC_*`` paths as runtime env vars).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

PREFIX = "CRLSC-PROBE "
CLIENT_MODULE = "crlsc_fl.flower.client"  # what Flower's actors import to run the ClientApp


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


def main(argv: list[str]) -> int:
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
    sys.exit(main(sys.argv[1:]))
