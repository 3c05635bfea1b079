"""Stage 2 in the federation, on the device side: the decoder trains on ``devices.accelerator``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crlsc_fl.device import stage2_decoder
from crlsc_fl.device.device_round import RoundTask, run_device_round
from crlsc_fl.device.device_store import DeviceStore
from crlsc_fl.scenario.config import from_flat

VALUES = {
    "devices.num-devices": 2, "data.dataset": "synthetic", "data.samples-per-device": 16, "data.test-samples": 20,
    "devices.architectures": "resnet18@0.25:1.0", "train.batch-size": 8, "data.min-shard-size": 16,
    "stage2.devices": 1, "stage2.train-samples": 8, "stage2.eval-samples": 4, "stage2.epochs": 1, "stage2.kmeans-iterations": 0,
}


def test_accelerator_the_device_decoder_trains_on_the_resolved_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = from_flat({**VALUES, "devices.accelerator": "auto"})
    store = DeviceStore(tmp_path, "run", "local", 0)
    run_device_round(cfg, 0, RoundTask("local", 1, "dcl", 16), store)  # a stage-1 round leaves the encoder file
    on_cpu = stage2_decoder.device_decoder_metrics(cfg, 0, store)
    assert on_cpu["num_train"] == 8 and on_cpu["num_eval"] == 4
    asked: list[str] = []

    def resolve(accelerator: str) -> torch.device:
        asked.append(accelerator)
        return torch.device("meta")  # a GPU's stand-in: the step runs, only the loss cannot be read back

    monkeypatch.setattr(stage2_decoder, "resolve_device", resolve)
    with pytest.raises(RuntimeError, match=r"item\(\) cannot be called on meta tensors"):
        stage2_decoder.device_decoder_metrics(cfg, 0, store)
    assert asked == ["auto"]
