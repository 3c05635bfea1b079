"""Where tensors live: the CPU or a CUDA GPU (the scenario key ``devices.accelerator``).

One function, :func:`resolve_device`, turns the setting into a ``torch.device`` for every
process that computes (the launcher checks it before Flower starts, each ClientApp, the
ServerApp's mentor, the stage-2 report), so ``"cuda"`` on a machine without CUDA fails at
once with the key's name instead of deep inside a training step:

- ``"cpu"`` (the default): bit-reproducible; a resumed run ends with the same metrics as an
  uninterrupted one;
- ``"cuda"``: the current CUDA device (in a Flower simulation Ray gives each ClientApp
  actor its share of a GPU, ``devices.gpus-per-device``, and sets ``CUDA_VISIBLE_DEVICES``);
- ``"auto"``: ``"cuda"`` where ``torch.cuda.is_available()``, else ``"cpu"``, decided in
  each process.

CUDA results are not bit-identical to the CPU's (other kernels, TF32 convolutions, another
summation order), nor always between two CUDA runs; see ``benchmarks/gpu_check.py``.

This module knows nothing of the scenario: callers pass the setting and the name of the
key it came from, so that low-level code (methods, stage 2) can use it too.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn

Accelerator = Literal["auto", "cpu", "cuda"]
ACCELERATORS: tuple[str, ...] = get_args(Accelerator)
ACCELERATOR_KEY = "devices.accelerator"


def cuda_unavailable_reason() -> str:
    """Why ``torch.cuda.is_available()`` is False here, for error messages."""
    if torch.version.cuda is None:
        return f"this torch {torch.__version__} is a CPU-only build"
    return f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no CUDA device (driver, CUDA_VISIBLE_DEVICES?)"


def resolve_device(accelerator: str, key: str = ACCELERATOR_KEY) -> torch.device:
    """The ``torch.device`` for ``accelerator`` (``auto``, ``cpu`` or ``cuda``) in this
    process; ``cuda`` without a usable CUDA device raises ``ValueError`` naming ``key``."""
    if accelerator not in ACCELERATORS:
        raise ValueError(f"{key}={accelerator!r} is not allowed; valid: {', '.join(ACCELERATORS)}")
    if accelerator == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if accelerator == "cuda" and not available:
        raise ValueError(f"{key}='cuda' but CUDA is not available: {cuda_unavailable_reason()}; use 'auto' or 'cpu'")
    return torch.device("cuda" if available else "cpu")


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's parameters (or buffers; the CPU for a module with neither):
    where the code that runs it puts its inputs."""
    for tensor in module.parameters():
        return tensor.device
    for buffer in module.buffers():
        return buffer.device
    return torch.device("cpu")


def check_precision(device: torch.device, precision: str, key: str = "train.precision") -> None:
    """``bfloat16`` autocast on a CUDA GPU needs bfloat16 support (Ampere or newer); older
    GPUs would fail in the first step, so fail here with the key's name."""
    if precision == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        name = torch.cuda.get_device_name(device)
        raise ValueError(f"{key}='bfloat16' needs a GPU with bfloat16 support (Ampere or newer); {name} has none: use 'float32'")


def release_cached_memory(device: torch.device) -> None:
    """Hand the CUDA memory this process cached back to the driver (e.g. after the server
    model's one-off feature extraction, so the ClientApps sharing the GPU can use it)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
