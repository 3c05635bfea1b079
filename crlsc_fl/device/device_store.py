"""Device-local storage: what a device keeps between rounds, never sent to the server.

Layout (one directory per device and topology)::

    <state root>/<run id>/<topology>/device-<id>/
        encoder.pt      the encoder (loadable by crlsc_fl.models.encoders.load_encoder), its
                        weights in float16 (half the bytes; tests/device/test_device_store.py
                        checks that kNN accuracy does not move), with, under "extra", the
                        round, schedule position, lr, RNG state and method state
        encoder.prev.pt the state the latest round started from, kept until the server has
                        committed that round (it names the round to start from in each task):
                        a round cut short by a crash or Ctrl-C is redone from it exactly.
                        Deleted when the next round starts, and by the ServerApp once the
                        topology is done (where it sees the same state root)
        kb/<key>.kb     knowledge bases (and anchor sets, peers' anchor-keyed PKBs) received
                        earlier (an SKB is sent to a device once); each is checked (format,
                        dimension) before it is kept

Adam's moments are not kept between rounds (they would triple the state: 100 devices x 5
topologies of ResNets are tens of GB); each round restarts them at the scheduled lr.

Every round starts from the stored (float16) weights, in an uninterrupted run as in a
resumed one, so a resumed run still ends with the same metrics. Once a topology's last
round and its stage 2 are done and its checkpoint is marked complete, the ServerApp
removes its state (:func:`remove_topology_state`) unless ``scenario.keep-device-state``.

The state root (:func:`crlsc_fl.data.paths.state_root`) is the node config key ``state-dir``
(deployment: ``--node-config "state-dir=..."``), else ``$CRLSC_STATE_DIR``, else
``<cache dir>/device-state``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, TypeVar

import torch

from crlsc_fl.bookkeeping.run_state import tree_size
from crlsc_fl.kb.anchors import AnchorSet, AnchorSetError
from crlsc_fl.kb.knowledge_base import KnowledgeBase, KnowledgeBaseError
from crlsc_fl.methods.base import Stage1Method
from crlsc_fl.models.encoders import save_encoder

T = TypeVar("T")



class DeviceStateError(FileNotFoundError):
    """The state a round must start from is not on the device."""


class DeviceStore:
    def __init__(self, root: Path, run_id: int | str, topology: str, device: int) -> None:
        self.path = Path(root) / str(run_id) / topology / f"device-{device}"
        (self.path / "kb").mkdir(parents=True, exist_ok=True)
        self._started_from: Path | None = None

    @property
    def encoder_file(self) -> Path:
        """The latest saved state."""
        return self.path / "encoder.pt"

    @property
    def previous_file(self) -> Path:
        return self.path / "encoder.prev.pt"

    def load_training(self, state_round: int | None = None) -> dict[str, Any] | None:
        """The training state saved after round ``state_round`` (None: the latest; 0 or
        nothing saved yet: None, i.e. start fresh)."""
        if state_round == 0:
            return None
        for path in (self.encoder_file, self.previous_file):
            if not path.exists():
                continue
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            if state_round is None or checkpoint["extra"].get("round") == state_round:
                if path == self.encoder_file:  # that round is committed: the one before is not needed
                    self.previous_file.unlink(missing_ok=True)
                self._started_from = path
                return {"encoder": checkpoint["state_dict"], **checkpoint["extra"]["training"]}
        if state_round is None:
            return None
        raise DeviceStateError(f"device state of round {state_round} not found in {self.path} (deleted?)")

    def save(self, method: Stage1Method, **meta: Any) -> None:
        """Save this round's state; the state the round started from becomes ``encoder.prev.pt``."""
        if self._started_from == self.encoder_file:
            os.replace(self.encoder_file, self.previous_file)
        state = method.training_state(with_optimizer=False)
        save_encoder(method.encoder, self.encoder_file, half=True, training={k: v for k, v in state.items() if k != "encoder"},
                     **meta)

    def knowledge_base(self, key: str, blob: bytes | None, dim: int | None = None) -> KnowledgeBase:
        """The KB ``key``: from ``blob`` if it just arrived (kept once it proved readable and
        of dimension ``dim``), else from local storage."""
        return self._payload(key, blob, KnowledgeBase.from_bytes, dim, "knowledge base", KnowledgeBaseError)

    def anchor_set(self, key: str, blob: bytes | None, dim: int | None = None) -> AnchorSet:
        """The anchor set ``key``, like :meth:`knowledge_base` (sent once, then kept)."""
        return self._payload(key, blob, AnchorSet.from_bytes, dim, "anchor set", AnchorSetError)

    def peer_anchor_keys(self, key: str, blob: bytes | None, anchors: AnchorSet) -> AnchorSet:
        """A peer's anchor-keyed PKB ``key`` over the device's ``anchors``, like :meth:`knowledge_base`."""
        return self._payload(key, blob, anchors.keys_from_bytes, anchors.dim, "anchor-keyed PKB", AnchorSetError)

    def _payload(self, key: str, blob: bytes | None, parse: Callable[[bytes], T], dim: int | None, what: str,
                 error: type[Exception]) -> T:
        path = self.path / "kb" / f"{key}.kb"
        if blob is None and not path.exists():
            raise error(f"{what} {key!r} was neither sent nor stored on this device ({path})")
        payload = parse(blob if blob is not None else path.read_bytes())
        if dim is not None:
            payload.check_dim(dim, f"{what} {key!r} rejected: the device encoder's")  # type: ignore[attr-defined]
        if blob is not None:
            path.write_bytes(blob)
        return payload


def prune_previous_states(root: Path, run_id: int | str, topology: str) -> int:
    """Delete the ``encoder.prev.pt`` copies of a topology whose rounds are all committed (no
    later task will ask for them); returns how many. Finds nothing where the device state is
    on other machines (deployment with per-node ``state-dir``)."""
    files = list((Path(root) / str(run_id) / topology).glob("device-*/encoder.prev.pt"))
    for path in files:
        path.unlink(missing_ok=True)
    return len(files)


def remove_topology_state(root: Path, run_id: int | str, topology: str, keep: Collection[int] = ()) -> int:
    """Delete a finished topology's device state (encoders, received KBs); returns the bytes
    freed. The devices in ``keep`` keep their encoder (``encoder.pt``) and lose the rest.
    Like :func:`prune_previous_states`, it reaches only state on this machine."""
    folder = Path(root) / str(run_id) / topology
    if not folder.is_dir():
        return 0
    size = tree_size(folder)
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
        return size
    kept = {f"device-{device}" for device in keep}
    for path in folder.iterdir():
        if path.name not in kept:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            continue
        for item in path.iterdir():
            if item.name != "encoder.pt":
                shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)
    return size - tree_size(folder)
