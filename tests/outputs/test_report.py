"""The run's summary report (summary.json)."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from crlsc_fl.outputs import report
from crlsc_fl.outputs.run_dir import RunDirectory


@pytest.mark.parametrize(("cluster_cpus", "cores"), [(48, 48.0), (None, float(psutil.cpu_count()))])
def test_run_cpu_use_counts_the_ray_clusters_cpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster_cpus: int | None,
                                                 cores: float) -> None:
    """A simulation's ServerApp shares the process that joined Ray: on a cluster the devices
    ran on all its CPUs, not only on this machine's."""
    monkeypatch.setattr(report, "ray_cluster_cpus", lambda: cluster_cpus)
    assert report.RunReport(RunDirectory(tmp_path), "7", 7, start=0.0).write("running")["cpu_use"]["cores"] == cores
