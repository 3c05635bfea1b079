"""Device-local storage: what a device keeps between rounds, never sent to the server.

Layout (one directory per device and topology)::

    <state root>/<run id>/<topology>/device-<id>/
        training.pt     encoder + optimizer + scheduler + RNG state (resumes local training)
        encoder.pt      the encoder alone, loadable by crlsc_fl.models.encoders.load_encoder
        kb/<key>.kb     knowledge bases received earlier (an SKB is sent to a device once)

The state root is the node config key ``state-dir`` (deployment: ``--node-config
"state-dir=..."``), else ``$CRLSC_STATE_DIR``, else ``<cache dir>/device-state``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch

from crlsc_fl.data.paths import cache_dir
from crlsc_fl.kb.knowledge_base import KnowledgeBase, KnowledgeBaseError

STATE_DIR_ENV = "CRLSC_STATE_DIR"


def state_root(node_config: Mapping[str, Any] | None = None) -> Path:
    explicit = (node_config or {}).get("state-dir") or os.environ.get(STATE_DIR_ENV)
    return Path(str(explicit)).expanduser().resolve() if explicit else cache_dir("device-state")


class DeviceStore:
    def __init__(self, root: Path, run_id: int | str, topology: str, device: int) -> None:
        self.path = Path(root) / str(run_id) / topology / f"device-{device}"
        (self.path / "kb").mkdir(parents=True, exist_ok=True)

    @property
    def training_file(self) -> Path:
        return self.path / "training.pt"

    @property
    def encoder_file(self) -> Path:
        return self.path / "encoder.pt"

    def load_training(self) -> dict[str, Any] | None:
        if not self.training_file.exists():
            return None
        return torch.load(self.training_file, map_location="cpu", weights_only=False)

    def save_training(self, state: dict[str, Any]) -> None:
        tmp = self.training_file.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.training_file)

    def knowledge_base(self, key: str, blob: bytes | None) -> KnowledgeBase:
        """The KB ``key``: from ``blob`` if it just arrived (then kept), else from local storage."""
        path = self.path / "kb" / f"{key}.kb"
        if blob is not None:
            path.write_bytes(blob)
            return KnowledgeBase.from_bytes(blob)
        if not path.exists():
            raise KnowledgeBaseError(f"knowledge base {key!r} was neither sent nor stored on this device ({path})")
        return KnowledgeBase.from_bytes(path.read_bytes())
