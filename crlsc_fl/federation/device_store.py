"""Device-local storage: what a device keeps between rounds, never sent to the server.

Layout (one directory per device and topology)::

    <state root>/<run id>/<topology>/device-<id>/
        encoder.pt      the encoder (loadable by crlsc_fl.models.encoders.load_encoder) with,
                        under "extra", the schedule position, lr, RNG state and method state
        kb/<key>.kb     knowledge bases received earlier (an SKB is sent to a device once)

Adam's moments are not kept between rounds (they would triple the state: 100 devices x 5
topologies of ResNets are tens of GB); each round restarts them at the scheduled lr.

The state root is the node config key ``state-dir`` (deployment: ``--node-config
"state-dir=..."``), else ``$CRLSC_STATE_DIR``, else ``<cache dir>/device-state``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch

from crlsc_fl.methods.base import Stage1Method
from crlsc_fl.models.encoders import save_encoder

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
    def encoder_file(self) -> Path:
        return self.path / "encoder.pt"

    def load_training(self) -> dict[str, Any] | None:
        """The training state saved by :meth:`save`, or None before the first round."""
        if not self.encoder_file.exists():
            return None
        checkpoint = torch.load(self.encoder_file, map_location="cpu", weights_only=True)
        return {"encoder": checkpoint["state_dict"], **checkpoint["extra"]["training"]}

    def save(self, method: Stage1Method, **meta: Any) -> None:
        state = method.training_state(with_optimizer=False)
        save_encoder(method.encoder, self.encoder_file, training={k: v for k, v in state.items() if k != "encoder"}, **meta)

    def knowledge_base(self, key: str, blob: bytes | None) -> KnowledgeBase:
        """The KB ``key``: from ``blob`` if it just arrived (then kept), else from local storage."""
        path = self.path / "kb" / f"{key}.kb"
        if blob is not None:
            path.write_bytes(blob)
            return KnowledgeBase.from_bytes(blob)
        if not path.exists():
            raise KnowledgeBaseError(f"knowledge base {key!r} was neither sent nor stored on this device ({path})")
        return KnowledgeBase.from_bytes(path.read_bytes())
