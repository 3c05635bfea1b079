"""Server-side checkpoints, so that an interrupted or failed run can be resumed.

After every completed round a topology's strategy state (ledger, which node holds which
KB, the latest PKBs, the round each device's state belongs to, averaged weights for
``fedavg``) goes to ``<run dir>/checkpoints/<topology>.pt``, written atomically; after its
stage 2 the topology is marked complete. ``python -m crlsc_fl.launch --resume RUN_DIR``
starts a new Flower run with ``scenario.resume = RUN_DIR``: the ServerApp skips complete
topologies, reloads the checkpoint of the interrupted one, drops result lines written
after it (:meth:`crlsc_fl.outputs.run_dir.RunDirectory.trim_rounds`) and continues with the next round. Devices keep their own
state per round (:mod:`crlsc_fl.device.device_store`); everything random is seeded by
scenario, device and round, so the resumed run ends with the same metrics as an
uninterrupted one. The checkpoints are removed when the run completes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

CHECKPOINTS = "checkpoints"  # the folder of a run directory that holds them


class Checkpoints:
    """One file per topology in ``folder`` (``RunDirectory.checkpoints`` places it)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

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

