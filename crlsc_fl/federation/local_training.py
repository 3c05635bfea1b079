"""How every device trains in each round: the scenario's ``[train]`` table.

:class:`LocalTrainingConfig` is the methods' :class:`TrainConfig` (batch size, lr, weight
decay, temperature; paper sec. 4.1) plus what the federation adds: the epochs a device
trains per round and the method of the devices that are sent knowledge (the paper's
``crlsc`` or ``crlsc-grounded``). A device's seed and schedule length come from the
scenario (:meth:`for_device`).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from pydantic import Field

from crlsc_fl.methods import METHODS
from crlsc_fl.methods.base import BatchSize, TrainConfig
from crlsc_fl.methods.crlsc import CRLSCMethod
from crlsc_fl.validation import component, registered


def kb_method_names() -> list[str]:
    """The registered methods that learn from a knowledge base (the CRLSC family)."""
    return [name for name in METHODS if issubclass(METHODS.get(name), CRLSCMethod)]  # type: ignore[arg-type]


@component
class LocalTrainingConfig(TrainConfig):
    batch_size: BatchSize = 32  # devices hold a few hundred images, not the paper's 50k
    local_epochs: Annotated[int, Field(ge=1)] = 1
    kb_method: registered(kb_method_names) = "crlsc"  # type: ignore[valid-type]

    def for_device(self, device: int, seed: int, rounds: int) -> LocalTrainingConfig:
        """This device's settings: its own seed, the cosine schedule over all its rounds."""
        return dataclasses.replace(self, total_epochs=rounds * self.local_epochs, seed=seed * 100_003 + device)
