"""SimCLR's batched augmentations: shapes, range, determinism, per-call randomness."""

from __future__ import annotations

import pytest
import torch

from crlsc_fl.augment.simclr import AugmentConfig, SimCLRAugment


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("size", [16, 32, 40])
def test_shape_and_range(batch: torch.Tensor, size: int) -> None:
    view = SimCLRAugment(AugmentConfig(size=size))(batch, torch.Generator().manual_seed(1))
    assert view.shape == (6, 3, size, size) and view.dtype == torch.float32
    assert view.min() >= 0.0 and view.max() <= 1.0


def test_same_seed_same_views(batch: torch.Tensor) -> None:
    augment = SimCLRAugment()
    a = augment(batch, torch.Generator().manual_seed(5))
    b = augment(batch, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_two_calls_differ(batch: torch.Tensor) -> None:
    augment, g = SimCLRAugment(), torch.Generator().manual_seed(5)
    first, second = augment(batch, g), augment(batch, g)
    assert not torch.allclose(first, second)
    assert all(not torch.allclose(x, y) for x, y in zip(first, second))  # every image gets its own parameters


def test_input_untouched(batch: torch.Tensor) -> None:
    copy = batch.clone()
    SimCLRAugment()(batch, torch.Generator().manual_seed(0))
    assert torch.equal(batch, copy)


def test_identity_settings_give_back_the_image(batch: torch.Tensor) -> None:
    """No crop, flip, jitter, grayscale or blur: the (bilinear, same-size) resample is exact."""
    config = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, gray_p=0.0, blur_p=0.0)
    view = SimCLRAugment(config)(batch, torch.Generator().manual_seed(0))
    assert torch.allclose(view, batch, atol=1e-5)


def test_flip_only_mirrors(batch: torch.Tensor) -> None:
    config = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=1.0, jitter_p=0.0, gray_p=0.0, blur_p=0.0)
    view = SimCLRAugment(config)(batch, torch.Generator().manual_seed(0))
    assert torch.allclose(view, batch.flip(-1), atol=1e-5)


def test_grayscale_always(batch: torch.Tensor) -> None:
    config = AugmentConfig(gray_p=1.0, jitter_p=0.0)
    view = SimCLRAugment(config)(batch, torch.Generator().manual_seed(0))
    assert torch.allclose(view[:, 0], view[:, 1], atol=1e-6) and torch.allclose(view[:, 1], view[:, 2], atol=1e-6)


def test_accelerator_views_stay_on_the_images_device_with_the_cpu_generators_draws(batch: torch.Tensor) -> None:
    """On another device (``meta``: placement without a GPU) every operand must follow the
    images there, and the CPU generator must advance exactly as for CPU images, so a seed
    gives the same parameters wherever the views are made."""
    augment = SimCLRAugment()
    on_cpu, elsewhere = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    expected = augment(batch, on_cpu)
    view = augment(batch.to("meta"), elsewhere)
    assert view.device.type == "meta" and view.shape == expected.shape and view.dtype == expected.dtype
    assert torch.equal(on_cpu.get_state(), elsewhere.get_state())
