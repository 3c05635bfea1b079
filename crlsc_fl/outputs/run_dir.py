"""The one writer of a run's results directory, ``<results>/<scenario>/<run id>/``.

The directory is ``<project root>/<scenario.results-dir>/<scenario.name>/<run id>/``, where
the project root is ``$CRLSC_PROJECT_ROOT`` (set by ``crlsc_fl.launch``; the ServerApp itself
runs from Flower's app directory) or the current directory; an absolute ``results-dir`` is
used as is. Every file in it is written by :class:`RunDirectory` (reading and summarising
them is :mod:`crlsc_fl.outputs.results`):

- ``config.json``: the Flower run id and the resolved scenario.
- ``mentor.json``: the server's knowledge (vectors, bytes, build time).
- ``metrics.jsonl``: one line per device and round (:func:`device_row`), appended as rounds
  finish so a crash loses no finished round; failed calls carry ``error``, ``error_type``,
  ``error_message``.
- ``participation.jsonl``: per topology and round, devices dropped, sent a message, succeeded, failed.
- ``communication-<topology>.json``: every transfer of the topology's ledger and its totals.
- ``rounds.jsonl``: the wall time of each round.
- ``stage2.jsonl``: the stage-2 decoders' PSNR/SSIM per device.
- ``summary.json`` and the plots, rewritten as the run goes.
- ``checkpoints/``: the strategies' state after each round (:mod:`crlsc_fl.bookkeeping.checkpoint`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from crlsc_fl.bookkeeping.checkpoint import CHECKPOINTS, Checkpoints
from crlsc_fl.bookkeeping.ledger import CommLedger
from crlsc_fl.environment import PROJECT_ROOT_ENV
from crlsc_fl.scenario.config import ScenarioConfig
from crlsc_fl.scenario.devices import DeviceSpec

# Result files whose lines belong to (topology, round); trimmed back to the checkpoints on resume.
ROUND_FILES = ("metrics.jsonl", "participation.jsonl", "rounds.jsonl", "stage2.jsonl")


def results_anchor() -> Path:
    """Where a relative ``scenario.results-dir`` starts on the server: ``$CRLSC_PROJECT_ROOT``
    (the launcher sets it: the ServerApp runs from Flower's copy of the app) or the cwd."""
    return Path(os.environ.get(PROJECT_ROOT_ENV) or Path.cwd()).resolve()


def results_base(results_dir: str, anchor: Path) -> Path:
    """``scenario.results-dir``, resolved against ``anchor`` when relative."""
    base = Path(results_dir).expanduser()
    return base if base.is_absolute() else anchor / base


def run_directory(cfg: ScenarioConfig, run_id: int | str) -> Path:
    return results_base(cfg.scenario.results_dir, results_anchor()) / cfg.scenario.name / str(run_id)


def device_row(topology: str, server_round: int, spec: DeviceSpec, values: dict[str, Any]) -> dict[str, Any]:
    """One line of ``metrics.jsonl``: who (device, architecture, profile), when, and what it
    reported (metrics and transfer totals, or the error fields). Transfer totals default to
    zero so that every line has them."""
    return {
        "topology": topology, "round": server_round, "device": spec.device, "arch": spec.arch, "width": spec.width,
        "profile": spec.profile, "bytes_received": 0, "bytes_sent": 0, "transfer_seconds": 0.0, **values,
    }


def error_row(kind: str, message: str) -> dict[str, str]:
    """The error fields of a device that sent no usable reply (``kind``: NoReply, NodeOffline)."""
    return {"error": f"{kind}: {message}", "error_type": kind, "error_message": message}


class RunDirectory:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_run(cls, cfg: ScenarioConfig, run_id: int | str) -> RunDirectory:
        return cls(run_directory(cfg, run_id))

    @property
    def checkpoints(self) -> Checkpoints:
        return Checkpoints(self.path / CHECKPOINTS)

    # -- run-level files ----------------------------------------------------------------
    def write_config(self, run_id: int | str, scenario: dict[str, Any]) -> None:
        self._write_json("config.json", {"run_id": run_id, "scenario": scenario})

    def recorded_run_id(self) -> str:
        """The Flower run id the directory was created by (a resumed run keeps it)."""
        return str(json.loads((self.path / "config.json").read_text())["run_id"])

    def write_mentor(self, report: dict[str, Any]) -> None:
        self._write_json("mentor.json", report)

    def write_summary(self, payload: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        """``summary.json``, and the plots of the metric ``rows`` once a device succeeded."""
        from crlsc_fl.outputs.plots import plot_runs  # matplotlib only when writing

        self._write_json("summary.json", payload)
        if any("error" not in r for r in rows):
            plot_runs({"": rows}, self.path, payload.get("stage2") or None)

    # -- per-round files ----------------------------------------------------------------
    def append_device_rows(
        self, topology: str, server_round: int, devices: list[DeviceSpec], failed: dict[int, dict[str, str]],
        succeeded: dict[int, dict[str, Any]],
    ) -> None:
        """The round's lines of ``metrics.jsonl``: failed devices first (in the order found),
        then the devices that succeeded, in the given order."""
        rows = [device_row(topology, server_round, devices[d], error) for d, error in failed.items()]
        rows += [device_row(topology, server_round, devices[d], values) for d, values in succeeded.items()]
        self._append_rows("metrics.jsonl", rows)

    def write_communication(self, topology: str, ledger: CommLedger) -> None:
        self._write_json(f"communication-{topology}.json", {"summary": ledger.summary(), "transfers": ledger.rows()})

    def append_participation(self, row: dict[str, Any]) -> None:
        self._append_rows("participation.jsonl", [row])

    def append_round_time(self, row: dict[str, Any]) -> None:
        self._append_rows("rounds.jsonl", [row])

    def append_stage2(self, rows: list[dict[str, Any]]) -> None:
        self._append_rows("stage2.jsonl", rows)

    def trim_rounds(self, progress: dict[str, tuple[int, bool]]) -> None:
        """On resume: drop the lines of rounds (and stage-2 runs) no checkpoint covers.
        ``progress``: per topology, (last checkpointed round, complete)."""
        for name in ROUND_FILES:
            path = self.path / name
            if not path.exists():
                continue
            kept = []
            for line in path.read_text().splitlines():
                if not line.strip():
                    continue
                row = json.loads(line)
                last, complete = progress.get(_topology_of(row), (0, False))
                if complete or row.get("round", math.inf) <= last:
                    kept.append(line)
            self._replace(path, "".join(line + "\n" for line in kept))

    # -- writing ------------------------------------------------------------------------
    def _write_json(self, name: str, payload: Any) -> None:
        self._replace(self.path / name, json.dumps(payload, indent=2, default=float))

    @staticmethod
    def _replace(path: Path, text: str) -> None:
        """Write atomically: a reader (or a crash) never sees half a file."""
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def _append_rows(self, name: str, rows: Iterable[dict[str, Any]]) -> None:
        """Append JSON lines to ``name`` and flush, so finished work survives a crash."""
        with (self.path / name).open("a") as handle:
            for row in rows:
                handle.write(json.dumps(row, default=float) + "\n")
            handle.flush()


def _topology_of(row: dict[str, Any]) -> str:
    return str(row.get("topology") or str(row.get("label", "")).split("/", 1)[-1])
