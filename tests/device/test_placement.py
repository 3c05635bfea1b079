"""Where a device's round ran: the Ray node id inside Ray, the host name elsewhere (inside Ray:
``tests/flower/test_ray_cluster_simulation.py``, where the rows name both nodes of a cluster)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from crlsc_fl.device.placement import placement, ray_cluster_cpus, ray_node_id


def test_outside_ray_the_node_is_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "ray", raising=False)  # a process that never imported Ray
    assert ray_node_id() is None and ray_cluster_cpus() is None
    assert placement() == {"node": socket.gethostname(), "host": socket.gethostname()}


def test_ray_imported_but_not_connected_is_not_a_ray_node() -> None:
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("Ray is connected in this process")
    assert ray_node_id() is None and placement()["node"] == socket.gethostname()


def test_ray_being_imported_by_another_thread_is_waited_for(tmp_path: Path) -> None:
    """The simulation's ServerApp thread writes the summary while Flower's backend thread may be
    importing Ray: a half-imported module must not break it (it did: AttributeError)."""
    fake = tmp_path / "ray"
    fake.mkdir()
    (fake / "__init__.py").write_text("import time\ntime.sleep(1.0)\n\ndef is_initialized():\n    return False\n")
    script = (
        "import sys, threading, time\n"
        "threading.Thread(target=lambda: __import__('ray')).start()\n"
        "while 'ray' not in sys.modules: time.sleep(0.01)\n"
        "from crlsc_fl.device.placement import ray_cluster_cpus, ray_node_id\n"
        "print(ray_node_id(), ray_cluster_cpus())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(tmp_path)},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None None"
