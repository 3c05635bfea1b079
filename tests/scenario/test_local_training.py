"""The [train] table: a device's seed and schedule, steps per round."""

from __future__ import annotations

import pytest

from crlsc_fl.scenario.local_training import LocalTrainingConfig


@pytest.mark.parametrize(("shard", "expected"), [(450, 14 * 3), (64, 2 * 3), (20, 1 * 3)])
def test_round_steps_by_epochs(shard: int, expected: int) -> None:
    assert LocalTrainingConfig(batch_size=32, local_epochs=3).round_steps(shard) == expected


@pytest.mark.parametrize("shard", [20, 450, 5000])
def test_steps_per_round_are_the_same_for_every_shard(shard: int) -> None:
    assert LocalTrainingConfig(batch_size=32, steps_per_round=100).round_steps(shard) == 100


def test_for_device_sets_seed_and_the_schedule_length() -> None:
    by_steps = LocalTrainingConfig(steps_per_round=100).for_device(7, seed=2, rounds=3)
    assert by_steps.total_steps == 300 and by_steps.total_epochs is None and by_steps.seed == 2 * 100_003 + 7
    by_epochs = LocalTrainingConfig(local_epochs=2).for_device(7, seed=2, rounds=3)
    assert by_epochs.total_epochs == 6 and by_epochs.total_steps is None
