"""Where a device's round ran, for its ``metrics.jsonl`` row, and how many CPUs the run had.

On a Ray cluster (``crlsc-fl run --ray-address``) any actor on any node may run any device in
any round, so the row says which node did: ``node`` is the Ray node id inside a Ray worker,
else the host name (a bare loop, a deployment's SuperNode); ``host`` is always the host name
(several Ray nodes may share a machine, and a node id does not say which machine it is).
"""

from __future__ import annotations

import socket
import sys
from typing import Any


def connected_ray() -> Any | None:
    """The ``ray`` module if this process is a connected Ray worker or driver, else None.

    A process that never imported Ray does not run in it, so Ray is not imported for that
    check. Where another thread is importing it right now (the simulation's ServerApp thread
    while Flower's backend starts), ``import ray`` waits for that import to finish."""
    if "ray" not in sys.modules:
        return None
    import ray

    return ray if ray.is_initialized() else None


def ray_node_id() -> str | None:
    """The Ray node id of this process, or None outside Ray."""
    ray = connected_ray()
    return None if ray is None else str(ray.get_runtime_context().get_node_id())


def placement() -> dict[str, str]:
    """``{"node": <Ray node id or host name>, "host": <host name>}`` of this process."""
    host = socket.gethostname()
    return {"node": ray_node_id() or host, "host": host}


def ray_cluster_cpus() -> int | None:
    """CPUs of the Ray cluster this process is connected to (the simulation's ServerApp shares
    the process that called ``ray.init``), else None. On a cluster they span several machines."""
    ray = connected_ray()
    return None if ray is None else int(ray.cluster_resources().get("CPU", 0)) or None
