"""Local device encoders L_e: torchvision ResNets with a projection head to the KB dimension.

The paper (sec. 4.1) uses ResNets that output 512-d vectors to match the CLIP SKB. The
stem is selectable: ``cifar`` (3x3 conv, no max-pool, the usual choice for 32x32 images and
paper quality) or ``imagenet`` (7x7 stride-2 conv + max-pool, about 10x cheaper on 32x32
inputs, the default for CPU-only simulations).

``width`` multiplies every channel count of the backbone (64/128/256/512 per stage, the
bottleneck widths of ResNet-50 included), so that devices of different capacity can be
simulated on a CPU: ResNet-18 x 0.25 trains about 12x faster than at full width. Width 1.0
is torchvision's ResNet exactly.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from crlsc_fl.registry import Registry


class ScaledResNet(ResNet):
    """torchvision's ResNet with every stage's channel count multiplied by ``width``.

    torchvision hard-codes 64/128/256/512 planes; this constructor sets the same attributes
    its ``__init__`` sets and reuses its ``_make_layer`` and initialisation, so width 1.0
    builds the same modules (and parameter count) as ``torchvision.models.resnet18``.
    """

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: list[int], width: float = 1.0) -> None:
        nn.Module.__init__(self)
        if not width > 0:
            raise ValueError(f"width={width} must be > 0")
        planes = [max(1, round(base * width)) for base in (64, 128, 256, 512)]
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = planes[0], 1, 1, 64
        self.conv1 = nn.Conv2d(3, planes[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, planes[0], layers[0])
        self.layer2 = self._make_layer(block, planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, planes[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(planes[3] * block.expansion, 1000)
        for module in self.modules():  # torchvision's initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)


ENCODERS: Registry[Callable[[float], ResNet]] = Registry("encoder")
ENCODERS.register("resnet18")(lambda width: ScaledResNet(BasicBlock, [2, 2, 2, 2], width))
ENCODERS.register("resnet34")(lambda width: ScaledResNet(BasicBlock, [3, 4, 6, 3], width))
ENCODERS.register("resnet50")(lambda width: ScaledResNet(Bottleneck, [3, 4, 6, 3], width))
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

    mean: torch.Tensor  # buffers: the input normalisation (registered in __init__)
    std: torch.Tensor

    def __init__(
        self, arch: str = "resnet18", dim: int = 512, stem: str = "imagenet", hidden_dim: int = 512, width: float = 1.0
    ) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; valid: {', '.join(STEMS)}")
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.arch, self.dim, self.stem, self.hidden_dim, self.width = arch, dim, stem, hidden_dim, width
        backbone = ENCODERS.get(arch)(width)
        if stem == "cifar":
            backbone.conv1 = nn.Conv2d(3, backbone.bn1.num_features, kernel_size=3, stride=1, padding=1, bias=False)
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
        return {"arch": self.arch, "dim": self.dim, "stem": self.stem, "hidden_dim": self.hidden_dim, "width": self.width}


def build_encoder(
    arch: str, dim: int = 512, stem: str = "imagenet", hidden_dim: int = 512, width: float = 1.0
) -> LocalEncoder:
    """Build a randomly initialised local encoder; unknown names list the valid ones."""
    return LocalEncoder(arch=arch, dim=dim, stem=stem, hidden_dim=hidden_dim, width=width)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_flops(encoder: LocalEncoder, image_size: int = 32) -> int:
    """Floating-point operations of one forward pass of one image (torch's FLOP counter:
    2 per multiply-accumulate of convolutions and matrix products)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = encoder.training
    encoder.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        encoder(torch.zeros(1, 3, image_size, image_size))
    encoder.train(was_training)
    return int(counter.get_total_flops())


FP16_MAX = float(torch.finfo(torch.float16).max)


def half_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating-point tensors as float16 (half the bytes), except any with a value beyond
    float16's range (kept as they are); integer tensors (BatchNorm counters) unchanged.
    ``load_state_dict`` casts them back into the float32 modules."""
    out = {}
    for name, tensor in state.items():
        fits = tensor.is_floating_point() and (tensor.numel() == 0 or float(tensor.abs().max()) <= FP16_MAX)
        out[name] = tensor.detach().to(torch.float16) if fits else tensor
    return out


def save_encoder(encoder: LocalEncoder, path: str | os.PathLike[str], *, half: bool = False, **extra: object) -> None:
    """Save weights (as float16 if ``half``, see :func:`half_state_dict`) and the spec
    needed to rebuild the encoder, atomically. The file holds CPU tensors wherever the
    encoder is (the tensors of a CPU encoder are not copied)."""
    state = {name: tensor.cpu() for name, tensor in encoder.state_dict().items()}
    tmp = f"{path}.tmp"
    torch.save({"spec": encoder.spec(), "state_dict": half_state_dict(state) if half else state, "extra": extra}, tmp)
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
