"""Local encoders L_e: output dimension, feature maps, registry errors, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crlsc_fl.models.encoders import (
    ENCODERS,
    FEATURE_LAYERS,
    STEMS,
    build_encoder,
    count_flops,
    count_parameters,
    half_state_dict,
    load_encoder,
    save_encoder,
)
from crlsc_fl.registry import UnknownNameError

ARCHS = ["resnet18", "resnet34", "resnet50"]
CHANNELS = {"resnet18": (64, 128, 256, 512), "resnet50": (256, 512, 1024, 2048)}
# spatial side after each layer for a 32x32 input
SIDES = {"imagenet": (8, 4, 2, 1), "cifar": (32, 16, 8, 4)}


_ENCODERS: dict[tuple[str, str], torch.nn.Module] = {}


def _cached_encoder(arch: str, stem: str):
    """One eval-mode encoder per (arch, stem) for the module (building resnet50 takes ~0.3 s)."""
    if (arch, stem) not in _ENCODERS:
        torch.manual_seed(0)
        _ENCODERS[arch, stem] = build_encoder(arch, dim=8, stem=stem, hidden_dim=8).eval()
    return _ENCODERS[arch, stem]


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("stem", STEMS)
def test_output_dim_equals_requested(arch: str, stem: str, batch: torch.Tensor) -> None:
    dim = 24
    encoder = build_encoder(arch, dim=dim, stem=stem, hidden_dim=32).eval()
    with torch.no_grad():
        out = encoder(batch)
        features = encoder.backbone_features(batch)
    assert out.shape == (2, dim) and torch.isfinite(out).all()
    assert features.shape == (2, encoder.feature_dim)
    assert encoder.feature_dim == (2048 if arch == "resnet50" else 512)
    assert encoder.spec() == {"arch": arch, "dim": dim, "stem": stem, "hidden_dim": 32, "width": 1.0}


def test_parameter_count_grows_with_depth() -> None:
    counts = [count_parameters(build_encoder(arch, dim=16)) for arch in ARCHS]
    assert counts[0] < counts[1] < counts[2]
    assert 11e6 < counts[0] < 12e6  # resnet18 backbone ~11.2M + a small head


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("layer_index", range(4))
@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_feature_map_shapes(arch: str, stem: str, layer_index: int, batch: torch.Tensor) -> None:
    encoder = _cached_encoder(arch, stem)
    with torch.no_grad():
        fmap = encoder.feature_map(batch, FEATURE_LAYERS[layer_index])
    side = SIDES[stem][layer_index]
    assert fmap.shape == (2, CHANNELS[arch][layer_index], side, side)


@pytest.mark.parametrize("arch", ARCHS)
def test_width_one_is_torchvision_and_smaller_widths_shrink(arch: str) -> None:
    import torchvision

    assert count_parameters(ENCODERS.get(arch)(1.0)) == count_parameters(getattr(torchvision.models, arch)(weights=None))
    counts = [count_parameters(ENCODERS.get(arch)(w)) for w in (0.25, 0.5, 1.0)]
    assert counts[0] < counts[1] < counts[2]
    assert counts[0] < counts[2] / 10  # parameters scale ~ width^2


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize(("arch", "width"), [("resnet18", 0.25), ("resnet50", 0.5)])
def test_scaled_encoder_shapes_and_round_trip(arch: str, width: float, stem: str, tmp_path: Path, batch: torch.Tensor) -> None:
    encoder = build_encoder(arch, dim=10, stem=stem, hidden_dim=16, width=width).eval()
    expansion = 4 if arch == "resnet50" else 1
    assert encoder.feature_dim == round(512 * width) * expansion
    with torch.no_grad():
        assert encoder(batch).shape == (2, 10)
        assert encoder.feature_map(batch, "layer1").shape[1] == round(64 * width) * expansion
    save_encoder(encoder, tmp_path / "enc.pt")
    loaded = load_encoder(tmp_path / "enc.pt").eval()
    assert loaded.spec()["width"] == width
    with torch.no_grad():
        assert torch.equal(loaded(batch), encoder(batch))


def test_flops_grow_with_width_and_depth() -> None:
    flops = {(arch, w): count_flops(build_encoder(arch, dim=16, width=w)) for arch in ARCHS for w in (0.25, 1.0)}
    for arch in ARCHS:
        assert 8 < flops[arch, 1.0] / flops[arch, 0.25] < 17  # ~width^2 (the head and stem scale less)
    assert flops["resnet18", 0.25] < flops["resnet34", 0.25] < flops["resnet50", 0.25]
    assert 70e6 < flops["resnet18", 1.0] < 80e6  # ~37 M multiply-adds of a 32x32 image with the imagenet stem


@pytest.mark.parametrize("width", [0.0, -0.5])
def test_bad_width(width: float) -> None:
    with pytest.raises(ValueError, match=f"width={width} must be > 0"):
        build_encoder("resnet18", width=width)


def test_stems_differ_in_the_first_conv() -> None:
    cifar, imagenet = build_encoder("resnet18", stem="cifar"), build_encoder("resnet18", stem="imagenet")
    assert cifar.backbone.conv1.kernel_size == (3, 3) and isinstance(cifar.backbone.maxpool, torch.nn.Identity)
    assert imagenet.backbone.conv1.kernel_size == (7, 7) and isinstance(imagenet.backbone.maxpool, torch.nn.MaxPool2d)


def test_errors_list_valid_names() -> None:
    assert ENCODERS.names() == ARCHS
    with pytest.raises(UnknownNameError, match="unknown encoder 'resnet99'; valid: resnet18, resnet34, resnet50"):
        build_encoder("resnet99")
    with pytest.raises(ValueError, match="unknown stem 'tiny'; valid: cifar, imagenet"):
        build_encoder("resnet18", stem="tiny")
    with pytest.raises(ValueError, match="dim must be >= 1"):
        build_encoder("resnet18", dim=0)
    with pytest.raises(ValueError, match="unknown feature layer 'layer5'; valid: layer1, layer2, layer3, layer4"):
        _cached_encoder("resnet18", "imagenet").feature_map(torch.zeros(1, 3, 32, 32), "layer5")


def test_save_load_round_trip(tmp_path: Path, batch: torch.Tensor) -> None:
    torch.manual_seed(0)
    encoder = build_encoder("resnet18", dim=12, stem="cifar", hidden_dim=20).eval()
    path = tmp_path / "enc.pt"
    save_encoder(encoder, path, round=3)
    assert not Path(f"{path}.tmp").exists()
    loaded = load_encoder(path, expected_arch="resnet18").eval()
    assert loaded.spec() == encoder.spec()
    with torch.no_grad():
        assert torch.equal(loaded(batch), encoder(batch))
    assert torch.load(path, weights_only=True)["extra"] == {"round": 3}


@pytest.mark.parametrize(
    ("tensor", "stored"),
    [
        (torch.tensor([0.5, -1.25]), torch.float16),
        (torch.tensor([7, 9]), torch.int64),  # BatchNorm's num_batches_tracked
        (torch.tensor([1e6, 1.0]), torch.float32),  # beyond float16's range: kept
        (torch.zeros(0), torch.float16),
    ],
)
def test_half_state_dict_halves_floats_that_fit(tensor: torch.Tensor, stored: torch.dtype) -> None:
    (out,) = half_state_dict({"t": tensor}).values()
    assert out.dtype == stored and torch.equal(out.to(tensor.dtype), tensor)


def test_half_precision_file_loads_into_float32_modules(tmp_path: Path, batch: torch.Tensor) -> None:
    torch.manual_seed(0)
    encoder = build_encoder("resnet18", dim=12, width=0.25).eval()
    save_encoder(encoder, tmp_path / "half.pt", half=True, round=1)
    save_encoder(encoder, tmp_path / "full.pt")
    assert (tmp_path / "half.pt").stat().st_size < 0.55 * (tmp_path / "full.pt").stat().st_size
    loaded = load_encoder(tmp_path / "half.pt").eval()
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch), encoder(batch), rtol=1e-2, atol=1e-2)


def test_load_arch_mismatch_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "enc.pt"
    save_encoder(build_encoder("resnet18", dim=8, hidden_dim=8), path)
    with pytest.raises(ValueError, match=r"holds a 'resnet18' encoder, but 'resnet34' was chosen"):
        load_encoder(path, expected_arch="resnet34")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not an encoder checkpoint written by crlsc_fl"):
        load_encoder(junk)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(ValueError, match="not an encoder checkpoint"):
        load_encoder(plain)
