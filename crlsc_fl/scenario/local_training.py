"""How every device trains in each round: the scenario's ``[train]`` table.

:class:`LocalTrainingConfig` is the methods' :class:`TrainConfig` (batch size, lr, weight
decay, temperature; paper sec. 4.1) plus what the federation adds: the epochs a device
trains per round (``local_epochs``, or ``steps_per_round`` steps whatever the shard's
size: equal compute for every device) and the method of the devices that are sent knowledge (one
of the registered methods that use a KB, :func:`kb_method_names`). A device's seed and schedule
length come from the scenario (:meth:`for_device`).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from pydantic import Field

from crlsc_fl.methods import PAPER_METHOD, Need, methods_using
from crlsc_fl.methods.base import BatchSize, TrainConfig
from crlsc_fl.validation import component, registered


def kb_method_names() -> list[str]:
    """The registered methods that learn from a knowledge base (they use :attr:`Need.KB`)."""
    return methods_using(Need.KB)


@component
class LocalTrainingConfig(TrainConfig):
    batch_size: Annotated[
        BatchSize, Field(description="images per step (devices hold a few hundred images, not the paper's 50k)")
    ] = 32
    local_epochs: Annotated[int, Field(ge=1, description="epochs of its shard a device trains per round")] = 1
    steps_per_round: Annotated[
        int, Field(ge=0, description="steps per round whatever the shard's size, equal compute for every device "
                                     "(0: `local-epochs` epochs of the shard)")
    ] = 0
    kb_method: Annotated[
        str, registered(kb_method_names),
        Field(description="method of the devices that are sent knowledge: a registered method that learns from a KB "
                          "(default: the paper's); one that uses anchors needs `kb.anchors > 0`"),
    ] = PAPER_METHOD

    def for_device(self, device: int, seed: int, rounds: int) -> LocalTrainingConfig:
        """This device's settings: its own seed, the cosine schedule over all its rounds."""
        schedule: dict[str, Any] = (
            {"total_steps": rounds * self.steps_per_round} if self.steps_per_round else {"total_epochs": rounds * self.local_epochs}
        )
        return dataclasses.replace(self, seed=seed * 100_003 + device, **schedule)

    def round_steps(self, shard_size: int) -> int:
        """Steps a device with ``shard_size`` training images takes in one round."""
        return self.steps_per_round or (shard_size // min(self.batch_size, shard_size)) * self.local_epochs
