"""Local device encoders L_e: torchvision ResNets with a projection head to the KB dimension.

The paper (sec. 4.1) uses ResNets that output 512-d vectors to match the CLIP SKB. The
stem is selectable: ``cifar`` (3x3 conv, no max-pool, the usual choice for 32x32 images and
paper quality) or ``imagenet`` (7x7 stride-2 conv + max-pool, about 10x cheaper on 32x32
inputs, the default for CPU-only simulations).
"""

from __future__ import annotations

import os
from typing import Callable

import torch
import torchvision
from torch import nn

from crlsc_fl.registry import Registry

ENCODERS: Registry[Callable[[], torchvision.models.ResNet]] = Registry("encoder")
ENCODERS.register("resnet18")(lambda: torchvision.models.resnet18(weights=None))
ENCODERS.register("resnet34")(lambda: torchvision.models.resnet34(weights=None))
ENCODERS.register("resnet50")(lambda: torchvision.models.resnet50(weights=None))
STEMS = ("cifar", "imagenet")
FEATURE_LAYERS = ("layer1", "layer2", "layer3", "layer4")

# Per-channel statistics of the CIFAR-10 training set; images arrive as floats in [0, 1].
IMAGE_MEAN = (0.4914, 0.4822, 0.4465)
IMAGE_STD = (0.2470, 0.2435, 0.2616)


class LocalEncoder(nn.Module):
    """ResNet backbone + 2-layer projection head; inputs are (B, 3, H, W) floats in [0, 1].

    - ``forward(x)``: (B, dim) projection, the vector q / p that meets the knowledge base.
    - ``backbone_features(x)``: (B, F) pooled backbone features, used by kNN and probes.
    - ``feature_map(x)``: (B, C, h, w) last spatial map, z_e(x) for the VQ-VAE link (eq. 4).
    """

    def __init__(self, arch: str = "resnet18", dim: int = 512, stem: str = "imagenet", hidden_dim: int = 512) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; valid: {', '.join(STEMS)}")
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.arch, self.dim, self.stem, self.hidden_dim = arch, dim, stem, hidden_dim
        backbone = ENCODERS.get(arch)()
        if stem == "cifar":
            backbone.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            backbone.maxpool = nn.Identity()
        self.feature_dim: int = backbone.fc.in_features
        backbone.fc = nn.Identity()
        self.backbone = backbone
        self.projection = nn.Sequential(
            nn.Linear(self.feature_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, dim),
        )
        self.register_buffer("mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1))

    def feature_map(self, x: torch.Tensor, layer: str = "layer4") -> torch.Tensor:
        """Spatial features after ``layer`` (one of FEATURE_LAYERS).

        With the ``imagenet`` stem a 32x32 input leaves a 1x1 map after layer4 and 2x2 after
        layer3; the ``cifar`` stem leaves 4x4 and 8x8.
        """
        if layer not in FEATURE_LAYERS:
            raise ValueError(f"unknown feature layer {layer!r}; valid: {', '.join(FEATURE_LAYERS)}")
        b = self.backbone
        x = (x - self.mean) / self.std
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        for name in FEATURE_LAYERS:
            x = getattr(b, name)(x)
            if name == layer:
                break
        return x

    def backbone_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.backbone.avgpool(self.feature_map(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.backbone_features(x))

    def spec(self) -> dict[str, object]:
        """What is needed to rebuild this encoder (saved beside its weights)."""
        return {"arch": self.arch, "dim": self.dim, "stem": self.stem, "hidden_dim": self.hidden_dim}


def build_encoder(arch: str, dim: int = 512, stem: str = "imagenet", hidden_dim: int = 512) -> LocalEncoder:
    """Build a randomly initialised local encoder; unknown names list the valid ones."""
    return LocalEncoder(arch=arch, dim=dim, stem=stem, hidden_dim=hidden_dim)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def save_encoder(encoder: LocalEncoder, path: str | os.PathLike[str], **extra: object) -> None:
    """Save weights and the spec needed to rebuild the encoder (atomically)."""
    tmp = f"{path}.tmp"
    torch.save({"spec": encoder.spec(), "state_dict": encoder.state_dict(), "extra": extra}, tmp)
    os.replace(tmp, path)


def load_encoder(path: str | os.PathLike[str], expected_arch: str | None = None) -> LocalEncoder:
    """Load an encoder saved by :func:`save_encoder`; a file of another architecture fails clearly."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        spec = checkpoint["spec"]
    except Exception as err:
        raise ValueError(f"{path} is not an encoder checkpoint written by crlsc_fl ({err})") from err
    if expected_arch is not None and spec["arch"] != expected_arch:
        raise ValueError(f"encoder file {path} holds a {spec['arch']!r} encoder, but {expected_arch!r} was chosen")
    encoder = build_encoder(**spec)
    encoder.load_state_dict(checkpoint["state_dict"])
    return encoder
