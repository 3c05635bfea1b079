"""The VQ-VAE semantic-communication link on a frozen encoder (paper sec. 3.2, eq. 4; sec. 4.3).

    image x -> frozen L_e -> z_e(x) (B, C, h, w) -> nearest codes q(z|x) -> bits -> channel
            -> bits -> indices -> codebook vectors z_q(x) -> decoder -> reconstruction x^

Training minimises eq. (4) without its third (commitment) term, the encoder being frozen:

    L = ||x - x^||^2  +  ||sg[z_e(x)] - e||^2,

the first term being -log p(x | z_q(x)) for a Gaussian decoder, up to constants. The decoder
learns from the first term, the codebook from the second (see ``codebook.py``). Because
the encoder is frozen, z_e(x) of the training images is computed once, before training.

A link runs where its encoder copy is (``device``, default the encoder's): codebook and
decoder are initialised on the CPU (the same seeded weights on any device) and moved there;
the random draws (batch order, k-means starts, channel noise) stay on CPU generators;
reconstructions, metrics and saved states come back to the CPU.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from crlsc_fl.accelerator import module_device
from crlsc_fl.models.encoders import FEATURE_LAYERS, LocalEncoder
from crlsc_fl.stage2.channels import Channel, IdealChannel, as_generator, build_channel
from crlsc_fl.stage2.codebook import VectorQuantizer, bits_to_indices, indices_to_bits
from crlsc_fl.stage2.decoder import ReconstructionDecoder
from crlsc_fl.stage2.features import (
    ImagesLike,
    as_image_tensor,
    batches,
    encoder_fingerprint,
    extract_feature_maps,
    load_frozen_encoder,
)
from crlsc_fl.stage2.lowlight import darken
from crlsc_fl.stage2.quality import encoded_bytes, psnr, ssim
from crlsc_fl.validation import build_component, component, registered

PositiveInt = Annotated[int, Field(ge=1)]


@component
class LinkConfig:
    """Codebook, decoder and training settings of the link. The defaults train in 1-2 minutes
    on one CPU core for 2,000 CIFAR images with a resnet18 ``imagenet``-stem encoder, and
    send 4 indices x 8 bits = 32 bits per image; ``code_groups`` or an earlier ``layer``
    (layer2: 4x4 map, 128 bits) send more bits and reconstruct better, at a higher cost."""

    layer: Annotated[
        str, registered(lambda: FEATURE_LAYERS),
        Field(description="encoder layer whose feature map z_e(x) is quantised "
                          "(2x2 map with the imagenet stem on 32x32 images, 8x8 with the cifar stem)"),
    ] = "layer3"
    num_codes: Annotated[int, Field(ge=2, description="codebook size K; each index costs ceil(log2 K) bits")] = 256
    code_groups: Annotated[
        PositiveInt, Field(description="sub-vectors per map position, each with its own codebook (1: plain VQ-VAE)")
    ] = 1
    base_width: Annotated[PositiveInt, Field(description="decoder channels up to its first upsampling block")] = 128
    min_width: Annotated[
        PositiveInt, Field(description="fewest decoder channels (the width halves at each later upsampling block, never below this)")
    ] = 32
    epochs: Annotated[int, Field(ge=0, description="epochs of codebook and decoder training")] = 10
    batch_size: Annotated[PositiveInt, Field(description="images per decoder training step")] = 32
    lr: Annotated[float, Field(gt=0, description="Adam learning rate of codebook and decoder")] = 2e-3
    kmeans_iterations: Annotated[
        int, Field(ge=0, description="k-means iterations that initialise the codebook from the training features (0: random codes)")
    ] = 10
    seed: int = Field(default=0, exclude=True)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> LinkConfig:
        """Build from a dict such as a Flower config record; ``num-codes`` and ``num_codes`` both work."""
        return build_component(cls, values, "link")


class SemanticLink(nn.Module):
    """Frozen encoder + VQ codebook + decoder; ``forward(x, channel)`` reconstructs ``x``.
    Runs on ``device`` (default: where ``encoder`` is)."""

    def __init__(
        self, encoder: LocalEncoder, config: LinkConfig, image_size: int, device: torch.device | str | None = None
    ) -> None:
        super().__init__()
        self.config, self.image_size = config, image_size
        # A frozen private copy: the caller's encoder (e.g. a Flower client's, still training
        # in stage 1) keeps its mode, gradients and device.
        self.encoder = copy.deepcopy(encoder).eval().requires_grad_(False)
        if device is not None:
            self.encoder.to(device)
        device = module_device(self.encoder)
        with torch.no_grad():
            probe = torch.zeros(1, 3, image_size, image_size, device=device)
            _, channels, map_size, map_w = self.encoder.feature_map(probe, config.layer).shape
        if map_size != map_w:
            raise ValueError(f"only square maps are supported, got {map_size}x{map_w}")
        self.map_size = map_size
        self.quantizer = VectorQuantizer(config.num_codes, channels, config.code_groups).to(device)
        self.decoder = ReconstructionDecoder(channels, map_size, image_size, config.base_width, config.min_width).to(device)

    @property
    def bits_per_image(self) -> int:
        """groups * h * w indices of ceil(log2 K) bits each."""
        return self.config.code_groups * self.map_size**2 * self.quantizer.num_bits

    def train(self, mode: bool = True) -> SemanticLink:
        super().train(mode)
        self.encoder.eval()  # frozen: its batch-norm statistics must never move
        return self

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Codebook and decoder weights (what a device trains and a server could average), on the CPU."""
        return {k: v.cpu() for k, v in self.state_dict().items() if not k.startswith("encoder.")}

    def load_trainable_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.load_state_dict({**self.encoder_state(), **state})

    def encoder_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if k.startswith("encoder.")}

    def _check_images(self, x: torch.Tensor) -> None:
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"this link was built for {self.image_size}x{self.image_size} images, got {tuple(x.shape[-2:])}")

    @torch.no_grad()
    def encode(self, images: ImagesLike, batch_size: int = 256) -> torch.Tensor:
        """Transmitter: images -> indices (N, groups, h, w), on the link's device."""
        self._check_images(as_image_tensor(images[:1]))
        return torch.cat(
            [self.quantizer.quantize(extract_feature_maps(self.encoder, x, self.config.layer, batch_size)) for x in batches(images, batch_size)]
        )

    def transmit(
        self, indices: torch.Tensor, channel: Channel, generator: torch.Generator | int | None = None
    ) -> tuple[torch.Tensor, int]:
        """Indices -> bits -> ``channel`` -> indices; returns (received indices, bit errors)."""
        bits = indices_to_bits(indices, self.quantizer.num_bits)
        received = channel.transmit(bits, generator)
        errors = int((received != bits).sum())
        return self.quantizer.wrap_received(bits_to_indices(received, self.quantizer.num_bits, tuple(indices.shape))), errors

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Receiver: indices -> z_q(x) -> reconstruction (N, 3, H, W) in [0, 1]."""
        # Detached: the codebook learns only from its own term of eq. (4), as in the VQ-VAE.
        return self.decoder(self.quantizer.lookup(indices).detach())

    def forward(self, images: torch.Tensor, channel: Channel | None = None, generator: torch.Generator | int | None = None) -> torch.Tensor:
        indices = self.encode(images)
        if channel is not None:
            indices, _ = self.transmit(indices, channel, generator)
        return self.decode(indices)


@dataclass
class DecoderTraining:
    """A trained link and its per-epoch losses."""

    link: SemanticLink
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0


def _image_size(images: ImagesLike) -> int:
    x = as_image_tensor(images[:1])
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"only square images are supported, got {tuple(x.shape[-2:])}")
    return int(x.shape[-1])


def train_decoder(
    encoder: LocalEncoder,
    images: ImagesLike,
    config: LinkConfig | None = None,
    *,
    channel: Channel | None = None,
    link: SemanticLink | None = None,
    log: Callable[[str], None] | None = None,
    device: torch.device | str | None = None,
) -> DecoderTraining:
    """Train codebook + decoder on ``images`` (uint8 (N, H, W, 3) or float (N, 3, H, W)).

    ``channel``: corrupt the indices during training too (default: ideal, as in the paper).
    ``link``: continue training this link (e.g. one loaded with federated weights) instead
    of building a new one; a new one starts its codebook from k-means on z_e(x).
    ``device``: where a new link runs (default: where ``encoder`` is); a given ``link``
    trains where it is.
    """
    if len(images) == 0:
        raise ValueError("train_decoder needs at least one image")
    config = config or LinkConfig()
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    if link is None:
        link = SemanticLink(encoder, config, _image_size(images), device)
        fresh = True
    else:
        fresh = False
    device = module_device(link)
    targets = as_image_tensor(images, device)
    link._check_images(targets[:1])
    z_e = extract_feature_maps(link.encoder, images, link.config.layer)  # the layer the link was built for
    if fresh and config.kmeans_iterations:
        link.quantizer.init_kmeans(z_e[: max(1, 20000 // link.map_size**2)], config.kmeans_iterations, config.seed)
    optimizer = torch.optim.Adam(list(link.decoder.parameters()) + list(link.quantizer.parameters()), lr=config.lr)
    steps_per_epoch = math.ceil(len(targets) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, config.epochs * steps_per_epoch))
    history: dict[str, list[float]] = {"reconstruction_mse": [], "codebook_loss": []}
    link.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(targets), generator=generator).to(device)
        sums = np.zeros(2)
        for start_i in range(0, len(order), config.batch_size):
            batch = order[start_i : start_i + config.batch_size]
            z, x = z_e[batch], targets[batch]
            sent = link.quantizer.quantize(z)
            received = link.transmit(sent, channel, generator)[0] if channel is not None else sent
            reconstruction_loss = F.mse_loss(link.decode(received), x)
            codebook_loss = link.quantizer.codebook_loss(z, sent)
            optimizer.zero_grad(set_to_none=True)
            (reconstruction_loss + codebook_loss).backward()
            optimizer.step()
            scheduler.step()
            sums += np.array([reconstruction_loss.item(), codebook_loss.item()]) * len(batch)
        history["reconstruction_mse"].append(float(sums[0] / len(targets)))
        history["codebook_loss"].append(float(sums[1] / len(targets)))
        if log is not None:
            mse, codebook = history["reconstruction_mse"][-1], history["codebook_loss"][-1]
            log(f"decoder epoch {epoch + 1}/{config.epochs}: mse {mse:.4f}, codebook {codebook:.4f}")
    link.eval()
    return DecoderTraining(link, history, time.perf_counter() - start)


def _to_uint8(images: ImagesLike) -> np.ndarray:
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        return images
    return (as_image_tensor(images).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def reconstruct(
    link: SemanticLink, indices: torch.Tensor, channel: Channel | None = None, generator: torch.Generator | int | None = None,
    batch_size: int = 256,
) -> tuple[torch.Tensor, int]:
    """Send precomputed ``indices`` through ``channel`` and decode; (reconstructions on the
    CPU, bit errors)."""
    link.eval()
    errors = 0
    if channel is not None:
        indices, errors = link.transmit(indices, channel, generator)
    recon = torch.cat([link.decode(indices[s : s + batch_size]) for s in range(0, len(indices), batch_size)])
    return recon.cpu(), errors


def evaluate_link(
    link: SemanticLink,
    images: ImagesLike,
    channels: Sequence[Channel] = (IdealChannel(),),
    seed: int = 0,
    targets: ImagesLike | None = None,
) -> list[dict[str, float | str]]:
    """One metrics dict per channel: PSNR / SSIM of the reconstructions against ``targets``
    (default: the images sent), measured and theoretical bit-error rate, bits per image, and
    their ratio to the PNG and JPEG (quality 75) bytes of the same images.

    The images are encoded once; each channel gets its own generator seeded with ``seed``.
    Only the images whose indices the channel changed are decoded again: the others are
    the ideal channel's reconstructions (decoding is per image), so a sweep's high-SNR and
    low-BER points, where most images arrive intact, cost little.
    """
    indices = link.encode(images)
    reference = as_image_tensor(images if targets is None else targets)
    sent_uint8 = _to_uint8(images)
    png_bits = float(encoded_bytes(sent_uint8, "png").mean() * 8)
    jpeg_bits = float(encoded_bytes(sent_uint8, "jpeg").mean() * 8)
    total_bits = link.bits_per_image * len(indices)
    intact = reconstruct(link, indices)[0]
    intact_psnr, intact_ssim = psnr(intact, reference), ssim(intact, reference)
    results = []
    for channel in channels:
        received, errors = link.transmit(indices, channel, as_generator(seed))
        changed = (received != indices).flatten(1).any(1)
        image_psnr, image_ssim = intact_psnr.clone(), intact_ssim.clone()
        if changed.any():
            recon = reconstruct(link, received[changed])[0]
            image_psnr[changed], image_ssim[changed] = psnr(recon, reference[changed]), ssim(recon, reference[changed])
        results.append(
            {
                **channel.describe(),
                "psnr": float(image_psnr.mean()),
                "ssim": float(image_ssim.mean()),
                "measured_ber": errors / total_bits,
                "theoretical_ber": channel.theoretical_ber(),
                "bits_per_image": float(link.bits_per_image),
                "png_bits_per_image": png_bits,
                "jpeg_bits_per_image": jpeg_bits,
                "ratio_png": link.bits_per_image / png_bits,  # < 1: the link sends fewer bits than PNG
                "ratio_jpeg": link.bits_per_image / jpeg_bits,
                "num_images": float(len(indices)),
            }
        )
    return results


def save_link(link: SemanticLink, path: str | os.PathLike[str]) -> None:
    """Save the config, the trained codebook + decoder and the fingerprint of the encoder."""
    payload = {
        "config": dataclasses.asdict(link.config),
        "image_size": link.image_size,
        "encoder_fingerprint": encoder_fingerprint(link.encoder),
        "state": link.trainable_state(),
    }
    tmp = f"{path}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_link(path: str | os.PathLike[str], encoder: LocalEncoder, device: torch.device | str | None = None) -> SemanticLink:
    """Rebuild a link saved by :func:`save_link` on ``encoder`` (on ``device``, default the
    encoder's); another encoder fails clearly."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload["encoder_fingerprint"] != encoder_fingerprint(encoder):
        raise ValueError(f"link file {path} was trained on another encoder than the one given")
    link = SemanticLink(encoder, LinkConfig(**payload["config"]), int(payload["image_size"]), device)
    link.load_trainable_state(payload["state"])
    return link.eval()


def train_device_decoder(
    encoder: LocalEncoder | str | os.PathLike[str],
    train_images: ImagesLike,
    eval_images: ImagesLike | None = None,
    config: LinkConfig | Mapping[str, Any] | None = None,
    *,
    channel: str = "ideal",
    channel_params: Mapping[str, float] | None = None,
    init_state: Mapping[str, torch.Tensor] | None = None,
    save_path: str | os.PathLike[str] | None = None,
    expected_arch: str | None = None,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Stage 2 on one device, for a Flower client: train the link, return scalar metrics.

    ``encoder``: the device's encoder, or the path of one saved by ``save_encoder``
    (``expected_arch`` checks its architecture). ``config``: a :class:`LinkConfig` or a dict
    of its fields (hyphens allowed). ``channel`` / ``channel_params``: the channel used for
    evaluation (``build_channel``). ``init_state``: start from these codebook + decoder
    weights (e.g. aggregated by the server) instead of k-means. ``save_path``: save the
    trained link (:func:`save_link`). ``eval_images`` default to the training images.
    ``device``: where the link trains (default: where the encoder is; a path loads on the CPU).

    Returns floats only (Flower MetricRecord): train_mse_first / _last, codebook_loss_last,
    psnr, ssim, measured_ber, bits_per_image, ratio_png, ratio_jpeg, lowlight_psnr,
    lowlight_ssim (darkened images, against the darkened input), num_train, num_eval, seconds.
    """
    link_config = config if isinstance(config, LinkConfig) else LinkConfig.from_mapping(config or {})
    eval_channel = build_channel(channel, **dict(channel_params or {}))  # fail before training
    frozen = encoder if isinstance(encoder, LocalEncoder) else load_frozen_encoder(encoder, arch=expected_arch)
    link = None
    if init_state is not None:
        link = SemanticLink(frozen, link_config, _image_size(train_images), device)
        link.load_trainable_state(init_state)
    trained = train_decoder(frozen, train_images, link_config, link=link, device=device)
    evaluation = train_images if eval_images is None else eval_images
    normal = evaluate_link(trained.link, evaluation, [eval_channel], seed=link_config.seed)[0]
    dark_images = darken(evaluation)  # type: ignore[type-var]  # one of the two image types, not known which
    dark = evaluate_link(trained.link, dark_images, [eval_channel], seed=link_config.seed)[0]
    if save_path is not None:
        save_link(trained.link, save_path)
    history = trained.history
    return {
        "train_mse_first": history["reconstruction_mse"][0] if history["reconstruction_mse"] else float("nan"),
        "train_mse_last": history["reconstruction_mse"][-1] if history["reconstruction_mse"] else float("nan"),
        "codebook_loss_last": history["codebook_loss"][-1] if history["codebook_loss"] else float("nan"),
        **{key: float(normal[key]) for key in ("psnr", "ssim", "measured_ber", "bits_per_image", "ratio_png", "ratio_jpeg")},
        "lowlight_psnr": float(dark["psnr"]),
        "lowlight_ssim": float(dark["ssim"]),
        "num_train": float(len(train_images)),
        "num_eval": float(len(evaluation)),
        "seconds": trained.seconds,
    }
