"""The mentor's knowledge: an SKB in the device dimension plus the anchors that ground it.

One entry point, :func:`build_mentor_knowledge`, for the three sources a run can choose
(``MentorConfig.source``):

- ``image``: the server's image model (EfficientNet-Lite offline, CLIP's image tower where
  weights exist) encodes the public split; PCA (:mod:`crlsc_fl.kb.projection`) brings the
  vectors to ``dim``; the SKB stores all of them and the anchors are a stratified sample of
  the public images with their projected vectors as keys.
- ``text``: the server's text model encodes class-name prompts (the paper's text SKB); PCA
  to ``dim``; an anchor's key is the projected vector of ``"a photo of a {label}."`` for the
  public image's label, i.e. grounding a text mentor uses the public split's labels.
- ``random``: the control. Gaussian unit vectors in place of the SKB (as many as the image
  SKB would hold) and in place of every anchor key: same sizes and dimension, no content.

The server's features of the public images are the expensive part (EfficientNet-Lite2 runs
at ~25 images/s on one loaded CPU core); they are cached on disk by content.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Annotated, Literal, get_args

import numpy as np
import torch
from pydantic import Field

from crlsc_fl.data.datasets import ImageDataset
from crlsc_fl.data.paths import cache_dir
from crlsc_fl.kb.anchors import AnchorSet, select_anchors
from crlsc_fl.kb.builders import cached_kb, content_key
from crlsc_fl.kb.knowledge_base import KBConfig, KnowledgeBase
from crlsc_fl.kb.projection import PCAProjection
from crlsc_fl.kb.prompts import CLASS_NAMES, TEMPLATES, make_prompts
from crlsc_fl.models.server_models import SERVER_MODELS, ServerEncoder, build_server_model
from crlsc_fl.validation import component, registered

MentorSource = Literal["text", "image", "random"]
MENTOR_SOURCES: tuple[str, ...] = get_args(MentorSource)


@component
class MentorConfig(KBConfig):
    """What the server builds: the scenario's ``[kb]`` table. The SKB's FAISS index is
    configured by the inherited :class:`KBConfig` fields.
    """

    source: Annotated[
        MentorSource, Field(description="what the SKB holds: `text` (class-name prompts, the paper), `image` (the public split's "
                                        "images) or `random` (unit Gaussian vectors of the same shape: the control)")
    ] = "text"
    server_model: Annotated[
        str, registered(SERVER_MODELS.names),
        Field(description="the server's model S_e: `minilm` (text), `open_clip`, `efficientnet-lite2` or `efficientnet-lite0` (image)"),
    ] = "minilm"
    open_clip_model: Annotated[str, Field(description="open_clip model name (`server-model = \"open_clip\"`)")] = "ViT-B-32"
    pretrained: Annotated[
        str, Field(description="open_clip weights: a tag (e.g. `openai`) or a checkpoint path (\"\": random initialisation)")
    ] = ""
    image_size: Annotated[
        int, Field(ge=32, description="EfficientNet-Lite input side (CIFAR images are resized bicubically)")
    ] = 128
    class_names: Annotated[
        str, registered(CLASS_NAMES.names),
        Field(description="class-name list of the text SKB's prompts (`imagenet`, `cifar10`, `cifar100`)"),
    ] = "imagenet"
    templates: Annotated[
        str, registered(TEMPLATES.names),
        Field(description="prompt templates of the text SKB (`paper`: \"a photo of a {}.\", `simple`, `openai`: open_clip's sets)"),
    ] = "simple"
    dim: Annotated[
        int, Field(ge=0, description="SKB and device dimension after the server's PCA (0: the model's own, no PCA)")
    ] = 0
    anchors: Annotated[
        int, Field(ge=0, description="public anchor images sent with the SKB to grounded devices (0: none, the paper)")
    ] = 0

    def __post_init__(self) -> None:
        modalities = SERVER_MODELS.get(self.server_model).modalities
        if self.source != "random" and self.source not in modalities:
            raise ValueError(
                f"source={self.source!r} needs the server model's {self.source} tower, but "
                f"server-model={self.server_model!r} has only {', '.join(modalities)}"
            )
        if self.dim == 1 or (self.source == "random" and self.dim == 0):
            raise ValueError(f"dim={self.dim} must be >= 2 (0: the server model's own dimension; not allowed for source 'random')")

    def known_dim(self) -> int | None:
        """The SKB's dimension when it is known without loading the server model."""
        # models whose class states its dimension (MiniLM, EfficientNet-Lite); open_clip's
        # depends on the config and is known only once loaded
        return self.dim or getattr(SERVER_MODELS.get(self.server_model), "dim", None)

    def build_server(self, device: str | torch.device = "cpu") -> ServerEncoder:
        """The server model S_e, loaded as configured, running on ``device``."""
        if self.server_model == "open_clip":
            return build_server_model("open_clip", model_name=self.open_clip_model, pretrained=self.pretrained or None, device=device)
        if self.server_model.startswith("efficientnet"):
            return build_server_model(self.server_model, image_size=self.image_size, device=device)
        return build_server_model(self.server_model, device=device)


@dataclass
class MentorKnowledge:
    """The SKB, the anchors (``None`` when ``anchors = 0``) and how they were made."""

    skb: KnowledgeBase
    anchors: AnchorSet | None
    projection: PCAProjection | None
    report: dict[str, object]


def server_features(server: ServerEncoder, modality: str, data: list[str] | np.ndarray) -> np.ndarray:
    """The server model's unit vectors of ``data``, cached on disk by model and content."""
    key = content_key("features", server.identity, modality, np.ascontiguousarray(data) if modality == "image" else data)
    path = cache_dir("server-features") / f"{key}.npy"
    if path.exists():
        return np.load(path)
    vectors = server.encode(modality, data)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, vectors)
    os.replace(tmp, path)
    # Hand on the array as a later run will load it: the PCA's SVD gave last-bit different
    # components for the in-memory array than for the same values loaded from disk.
    return np.load(path)


def _unit_gaussian(count: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def build_mentor_knowledge(
    config: MentorConfig, public: ImageDataset, server: ServerEncoder | None = None, seed: int = 0,
    device: str | torch.device = "cpu",
) -> MentorKnowledge:
    """Build the SKB and anchor set of ``config.source`` from the ``public`` split.

    ``seed`` picks the anchors (stratified by label) and draws the random control's vectors.
    The SKB is cached on disk by content (:func:`crlsc_fl.kb.builders.cached_kb`).
    ``device``: where the server model is loaded when ``server`` is not given (its features
    are cached by model and content, not by device: a cache filled on one is used on both).
    """
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    anchor_ids = select_anchors(public.labels, config.anchors, seed) if config.anchors else np.empty(0, np.int64)
    projection: PCAProjection | None = None
    if config.source == "random":
        skb_vectors = _unit_gaussian(len(public), config.dim, rng)
        anchor_keys = _unit_gaussian(len(anchor_ids), config.dim, rng)
        model, source = "random-gaussian", "random"
    else:
        server = server or config.build_server(device)
        model = server.identity
        if config.source == "image":
            features = server_features(server, "image", np.asarray(public.images))
            source = f"image:{public.name}-public"
        else:
            features = server_features(server, "text", make_prompts(config.class_names, config.templates))
            source = f"text:{config.class_names}-names:{config.templates}"
        if config.dim:
            projection = PCAProjection.fit(features, config.dim)
        project = projection if projection is not None else (lambda v: v)
        skb_vectors = project(features)
        if config.source == "image":
            anchor_keys = skb_vectors[anchor_ids]
        else:  # an anchor's key: its label's prompt, so grounding a text mentor uses the public labels
            label_prompts = [f"a photo of a {name}." for name in public.class_names]
            anchor_keys = project(server_features(server, "text", label_prompts))[public.labels[anchor_ids]]
    skb = cached_kb(
        content_key("skb", model, skb_vectors, config.index_settings()),
        lambda: KnowledgeBase.build(skb_vectors, config, source=source, modality=config.source, model=model),
    )
    anchors = (
        AnchorSet(np.asarray(public.images)[anchor_ids], anchor_keys, source=f"anchors:{source}") if len(anchor_ids) else None
    )
    report: dict[str, object] = {
        "source": source, "model": model, "skb_count": skb.count, "dim": skb.dim, "skb_bytes": skb.nbytes(),
        "anchors": len(anchor_ids), "anchor_bytes": len(anchors.to_bytes()) if anchors is not None else 0,
        "pca_explained_variance": projection.explained_variance_ratio if projection else None,
        "build_seconds": time.perf_counter() - start,
    }
    return MentorKnowledge(skb, anchors, projection, report)
