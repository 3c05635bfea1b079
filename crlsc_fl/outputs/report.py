"""The run's summary report, ``summary.json`` (and the plots), rewritten as the run goes.

``summary.json`` (:class:`RunReport`): status ``running`` / ``completed`` / ``failed`` /
``interrupted``; per topology the device kNN statistics of the last round and of every
round, overall and by architecture, the encoders' sizes, seconds per round, error counts,
the successful device-rounds each node ran (``device_rounds_by_node``: on a Ray cluster,
how the work spread); the first errors; the run's ``footprint`` (:mod:`crlsc_fl.outputs.footprint`).
The statistics are :mod:`crlsc_fl.outputs.results`'s; the run directory writes the file.
"""

from __future__ import annotations

import json
import time
from typing import Any

from crlsc_fl.bookkeeping.failures import first_errors
from crlsc_fl.device.placement import ray_cluster_cpus
from crlsc_fl.outputs.footprint import Footprint
from crlsc_fl.outputs.results import cpu_use, read_metrics, seconds_per_round, summarize, summarize_stage2
from crlsc_fl.outputs.run_dir import RunDirectory


class RunReport:
    """``summary.json`` (and the plots) of a run, rewritten as it goes: status, results per
    topology, error and dropout counts per round, the first errors."""

    def __init__(
        self, run_dir: RunDirectory, run_key: str, flower_run_id: int | str, start: float,
        footprint: Footprint | None = None,
    ) -> None:
        self.run_dir, self.run_key, self.start, self.footprint = run_dir, run_key, start, footprint
        previous_file = run_dir.path / "summary.json"
        previous = json.loads(previous_file.read_text()) if previous_file.exists() else {}
        runs = previous.get("flower_run_ids", [])
        self.flower_run_ids = [*runs, str(flower_run_id)] if str(flower_run_id) not in runs else runs
        if footprint is not None:  # a resumed run: the interrupted one's peaks count too
            footprint.include(previous.get("footprint", {}))

    def write(self, status: str, failure: BaseException | None = None) -> dict[str, Any]:
        run_dir = self.run_dir.path
        rows = read_metrics(run_dir) if (run_dir / "metrics.jsonl").exists() else []
        topologies = summarize(rows)
        participation = read_metrics(run_dir, "participation.jsonl") if (run_dir / "participation.jsonl").exists() else []
        for row in participation:
            entry = topologies.setdefault(row["topology"], {})
            entry.setdefault("dropped_by_round", {})[str(row["round"])] = len(row["dropped"])
        if (run_dir / "rounds.jsonl").exists():
            for topology, seconds in seconds_per_round(read_metrics(run_dir, "rounds.jsonl")).items():
                topologies.setdefault(topology, {})["seconds_per_round"] = seconds
        errors = first_errors(rows)
        payload: dict[str, Any] = {
            "run_id": self.run_key, "flower_run_ids": self.flower_run_ids, "status": status,
            "elapsed_seconds": time.time() - self.start, "errors": sum(1 for r in rows if "error" in r),
            "first_errors": errors, "topologies": topologies,
        }
        if failure is not None:
            payload["failure"] = f"{type(failure).__name__}: {failure}"
        if self.footprint is not None:
            payload["footprint"] = self.footprint.as_dict()
        payload["cpu_use"] = cpu_use(rows, payload["elapsed_seconds"], ray_cluster_cpus())
        if (run_dir / "stage2.jsonl").exists():
            payload["stage2"] = summarize_stage2(read_metrics(run_dir, "stage2.jsonl"))
        self.run_dir.write_summary(payload, rows)
        return payload
