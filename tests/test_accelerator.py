"""``devices.accelerator``: resolving auto / cpu / cuda (CUDA's presence monkeypatched, so no
GPU is needed), the early error for CUDA where there is none, and the helpers the device code
uses to find and check its device."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from crlsc_fl.accelerator import ACCELERATORS, check_precision, module_device, resolve_device
from crlsc_fl.scenario.config import ConfigError, from_flat


@pytest.mark.parametrize(
    ("accelerator", "cuda_available", "expected"),
    [("cpu", False, "cpu"), ("cpu", True, "cpu"), ("auto", False, "cpu"), ("auto", True, "cuda"), ("cuda", True, "cuda")],
)
def test_accelerator_resolves_to_the_device_this_machine_has(
    accelerator: str, cuda_available: bool, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_available)
    assert resolve_device(accelerator) == torch.device(expected)


def test_accelerator_cuda_without_cuda_fails_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^devices\.accelerator='cuda' but CUDA is not available: .*use 'auto' or 'cpu'"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match=r"^--accelerator='cuda' but CUDA"):
        resolve_device("cuda", key="--accelerator")


def test_accelerator_unknown_value_is_named() -> None:
    with pytest.raises(ValueError, match=r"devices\.accelerator='gpu' is not allowed; valid: auto, cpu, cuda"):
        resolve_device("gpu")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"devices.accelerator": "gpu"}, "devices.accelerator='gpu': Input should be 'auto', 'cpu' or 'cuda'"),
        ({"devices.gpus-per-device": 0.0}, "devices.gpus-per-device=0.0: Input should be greater than 0"),
        ({"devices.gpus-per-device": 2.0}, "devices.gpus-per-device=2.0: Input should be less than or equal to 1"),
        ({"devices.gpus-per-device": "0.5"}, "devices.gpus-per-device='0.5': Input should be a valid number"),
    ],
)
def test_accelerator_keys_are_validated_with_the_scenario(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_flat(values)
    assert message in str(err.value)


def test_accelerator_keys_default_to_the_cpu_and_a_quarter_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default stays on the CPU even where CUDA exists (CPU runs are bit-reproducible)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    devices = from_flat({}).devices
    assert (devices.accelerator, devices.gpus_per_device) == ("cpu", 0.25)
    assert resolve_device(devices.accelerator).type == "cpu"
    assert from_flat({"devices.accelerator": "auto", "devices.gpus-per-device": 1}).devices.gpus_per_device == 1
    assert ACCELERATORS == ("auto", "cpu", "cuda")


def test_accelerator_module_device_is_where_parameters_or_buffers_are() -> None:
    assert module_device(nn.Linear(2, 2).to("meta")) == torch.device("meta")
    norm = nn.BatchNorm1d(3, affine=False).to("meta")  # buffers only
    assert module_device(norm) == torch.device("meta")
    assert module_device(nn.ReLU()) == torch.device("cpu")


def test_accelerator_bfloat16_on_a_gpu_without_it_fails_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla T4")
    with pytest.raises(ValueError, match=r"train\.precision='bfloat16' needs a GPU with bfloat16 support .*Tesla T4 has none"):
        check_precision(torch.device("cuda"), "bfloat16")
    check_precision(torch.device("cuda"), "float32")
    check_precision(torch.device("cpu"), "bfloat16")  # the CPU path emulates what it lacks
