"""Server-side checkpoints, so that an interrupted or failed run can be resumed.

After every completed round a topology's strategy state (ledger, which node holds which
KB, the latest PKBs, the round each device's state belongs to, averaged weights for
``fedavg``) goes to ``<run dir>/checkpoints/<topology>.pt``, written atomically; after its
stage 2 the topology is marked complete. ``python -m crlsc_fl.launch --resume RUN_DIR``
starts a new Flower run with ``scenario.resume = RUN_DIR``: the ServerApp skips complete
topologies, reloads the checkpoint of the interrupted one, drops result lines written
after it (:func:`trim_results`) and continues with the next round. Devices keep their own
state per round (:mod:`crlsc_fl.federation.device_store`); everything random is seeded by
scenario, device and round, so the resumed run ends with the same metrics as an
uninterrupted one. The checkpoints are removed when the run completes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch

CHECKPOINTS = "checkpoints"
# Result files whose lines belong to (topology, round); trimmed back to the checkpoints on resume.
ROUND_FILES = ("metrics.jsonl", "participation.jsonl", "rounds.jsonl", "stage2.jsonl")


class Checkpoints:
    def __init__(self, run_dir: Path) -> None:
        self.folder = Path(run_dir) / CHECKPOINTS

    def path(self, topology: str) -> Path:
        return self.folder / f"{topology}.pt"

    def save(self, topology: str, server_round: int, state: dict[str, Any], complete: bool = False) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(topology)
        tmp = path.with_suffix(".tmp")
        torch.save({"round": server_round, "complete": complete, "state": state}, tmp)
        os.replace(tmp, path)  # a crash while writing keeps the previous checkpoint

    def mark_complete(self, topology: str) -> None:
        saved = self.load(topology)
        if saved is not None:
            self.save(topology, saved["round"], saved["state"], complete=True)

    def load(self, topology: str) -> dict[str, Any] | None:
        path = self.path(topology)
        return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None

    def progress(self, topologies: tuple[str, ...]) -> dict[str, tuple[int, bool]]:
        """Per checkpointed topology: (last completed round, complete)."""
        out = {}
        for topology in topologies:
            saved = self.load(topology)
            if saved is not None:
                out[topology] = (int(saved["round"]), bool(saved["complete"]))
        return out

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _topology_of(row: dict[str, Any]) -> str:
    return str(row.get("topology") or str(row.get("label", "")).split("/", 1)[-1])


def trim_results(run_dir: Path, progress: dict[str, tuple[int, bool]]) -> None:
    """Drop the result lines of rounds (and stage-2 runs) not covered by a checkpoint."""
    for name in ROUND_FILES:
        path = Path(run_dir) / name
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
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, path)
