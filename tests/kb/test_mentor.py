"""The mentor's knowledge: SKB + anchors for the image, text and random sources."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from crlsc_fl.data.datasets import CIFAR10_CLASSES, ImageDataset
from crlsc_fl.data.synthetic import make_synthetic_images
from crlsc_fl.kb.mentor import MentorConfig, build_mentor_knowledge, server_features
from crlsc_fl.kb.prompts import make_prompts
from crlsc_fl.models.server_models import build_server_model
from crlsc_fl.validation import ConfigError, build_component

DIM = 8
KB = dict(index_type="pq", m=4, nbits=4)


@pytest.fixture(scope="module")
def public() -> ImageDataset:
    images, labels = make_synthetic_images(40, num_classes=10, image_size=32, seed=0)
    return ImageDataset("synthetic", images, labels, tuple(CIFAR10_CLASSES))


@pytest.fixture(scope="module")
def lite0():
    return build_server_model("efficientnet-lite0", image_size=64)


def _config(source: str, server_model: str = "efficientnet-lite0", **overrides) -> MentorConfig:
    return MentorConfig(**({"source": source, "server_model": server_model, "dim": DIM, "anchors": 20,
                            "class_names": "cifar10", "templates": "paper"} | KB | overrides))


def test_image_mentor_keys_are_the_skb_vectors_of_the_anchor_images(public: ImageDataset, lite0, private_cache: Path) -> None:
    knowledge = build_mentor_knowledge(_config("image"), public, lite0)
    assert knowledge.skb.count == len(public) and knowledge.skb.dim == DIM
    anchors = knowledge.anchors
    assert anchors is not None and len(anchors) == 20 and anchors.dim == DIM
    np.testing.assert_allclose(np.linalg.norm(anchors.keys, axis=1), 1.0, atol=1e-5)
    # each anchor image is one of the public images, and its key that image's projected vector
    exact = knowledge.projection(server_features(lite0, "image", np.asarray(public.images)))
    rows = np.array([np.flatnonzero((np.asarray(public.images) == image).all(axis=(1, 2, 3)))[0] for image in anchors.images])
    np.testing.assert_allclose(anchors.keys, exact[rows], atol=1e-5)
    # and the SKB stores those vectors: an anchor's key retrieves its own image's entry (PQ is lossy)
    _, ids, _ = knowledge.skb.search(anchors.keys, 1)
    assert (ids[:, 0] == rows).mean() >= 0.8
    assert knowledge.report["anchors"] == 20 and knowledge.report["anchor_bytes"] > 0


def test_server_features_are_cached(public: ImageDataset, lite0, private_cache: Path) -> None:
    first = server_features(lite0, "image", np.asarray(public.images[:4]))

    class Unusable:
        identity = lite0.identity

        def encode(self, *args):
            raise AssertionError("the cache should have answered")

    np.testing.assert_array_equal(server_features(Unusable(), "image", np.asarray(public.images[:4])), first)
    assert len(list((private_cache / "server-features").glob("*.npy"))) == 1


def test_text_mentor_keys_anchors_by_their_label_prompt(public: ImageDataset, minilm, private_cache: Path) -> None:
    knowledge = build_mentor_knowledge(_config("text", "minilm", dim=4, index_type="flat"), public, minilm)
    assert knowledge.skb.count == 10 and knowledge.skb.metadata.modality == "text"
    anchors = knowledge.anchors
    assert anchors is not None
    labels = np.array([public.labels[(np.asarray(public.images) == image).all(axis=(1, 2, 3))][0] for image in anchors.images])
    same = labels[:, None] == labels[None, :]
    sim = anchors.keys @ anchors.keys.T
    assert np.allclose(sim[same], 1.0, atol=1e-5) and sim[~same].max() < 0.999
    assert anchors.targets()[0].shape[0] == len(set(labels))


def test_random_mentor_has_the_same_sizes_and_no_content(public: ImageDataset, private_cache: Path) -> None:
    knowledge = build_mentor_knowledge(_config("random"), public)
    assert knowledge.skb.count == len(public) and knowledge.skb.dim == DIM and knowledge.projection is None
    assert knowledge.anchors is not None and len(knowledge.anchors) == 20
    again = build_mentor_knowledge(_config("random"), public)
    np.testing.assert_array_equal(knowledge.anchors.keys, again.anchors.keys)  # seeded
    other = build_mentor_knowledge(_config("random"), public, seed=1)
    assert not np.allclose(knowledge.anchors.keys, other.anchors.keys)


def test_no_anchors(public: ImageDataset, private_cache: Path) -> None:
    assert build_mentor_knowledge(_config("random", anchors=0), public).anchors is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(source="text", server_model="efficientnet-lite2"),
         "needs the server model's text tower, but server-model='efficientnet-lite2' has only image"),
        (dict(source="image", server_model="minilm"), "needs the server model's image tower"),
        (dict(source="audio"), "kb.source='audio': Input should be 'text', 'image' or 'random'"),
        (dict(dim=1), "dim=1 must be >= 2"),
        (dict(source="random", dim=0), "not allowed for source 'random'"),
        (dict(anchors=-1), "kb.anchors=-1: Input should be greater than or equal to 0"),
        (dict(image_size=16), "kb.image-size=16: Input should be greater than or equal to 32"),
        (dict(server_model="bert"), "kb.server-model='bert': 'bert' is not allowed; valid:"),
        (dict(index_type="hnsw"), "kb.index-type='hnsw': Input should be 'pq', 'ivfpq' or 'flat'"),
    ],
)
def test_bad_config(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_component(MentorConfig, overrides, "kb")


def test_text_skb_from_minilm_is_built_once(public: ImageDataset, minilm, private_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The paper's text SKB (no PCA, no anchors): its vectors are the prompts' and a second
    build reads the caches instead of encoding again."""
    calls: list[int] = []
    original = minilm.encode_text
    monkeypatch.setattr(minilm, "encode_text", lambda texts, *a, **k: calls.append(len(texts)) or original(texts, *a, **k))
    config = MentorConfig(class_names="cifar10", templates="paper", index_type="flat")
    knowledge = build_mentor_knowledge(config, public, minilm)
    prompts = make_prompts("cifar10", "paper")
    assert (knowledge.skb.count, knowledge.skb.dim) == (10, 384) and calls == [10] and knowledge.anchors is None
    assert knowledge.skb.metadata.source == "text:cifar10-names:paper" and knowledge.skb.metadata.model == "minilm:all-MiniLM-L6-v2"
    np.testing.assert_allclose(knowledge.skb.decoded_vectors(), original(prompts), atol=1e-5)
    _, ids, _ = knowledge.skb.search(original(["a picture of a cat"]), 1)
    assert prompts[ids[0, 0]] == "a photo of a cat."
    again = build_mentor_knowledge(config, public, minilm)
    assert calls == [10] and again.skb.to_bytes() == knowledge.skb.to_bytes()
    assert len(list((private_cache / "kb").glob("*.kb"))) == 1


def test_tiny_open_clip_image_and_text_skbs(public: ImageDataset, tiny_clip, private_cache: Path) -> None:
    config = MentorConfig(source="image", server_model="open_clip", open_clip_model=tiny_clip.identity.split(":")[1],
                          m=8, nbits=3, anchors=10)
    image = build_mentor_knowledge(config, public, tiny_clip)
    assert (image.skb.count, image.skb.dim) == (len(public), 64) and image.anchors is not None and image.anchors.dim == 64
    assert image.skb.metadata.modality == "image" and image.skb.metadata.model == "open_clip:crlsc-tiny-test:random-init"
    text = build_mentor_knowledge(dataclasses.replace(config, source="text", class_names="cifar10", templates="paper"), public, tiny_clip)
    assert (text.skb.count, text.skb.dim) == (10, 64) and text.skb.metadata.modality == "text"


@pytest.mark.parametrize("server_model", ["open_clip", "efficientnet-lite0"])
def test_accelerator_the_server_model_runs_on_the_chosen_device(
    public: ImageDataset, tiny_clip_name: str, private_cache: Path, server_model: str
) -> None:
    """``meta`` stands for a GPU: the model is loaded there, the images are resized and
    normalised there, and the features are brought back to the CPU (which ``meta`` cannot:
    no data), so nothing reaches the feature cache."""
    config = _config("image", server_model, open_clip_model=tiny_clip_name, image_size=32)
    assert {p.device.type for p in config.build_server("meta")._model.parameters()} == {"meta"}
    with pytest.raises(NotImplementedError, match="Cannot copy out of meta tensor"):
        build_mentor_knowledge(config, public, device="meta")
    assert not list((private_cache / "server-features").glob("*.npy"))
    assert {p.device.type for p in config.build_server()._model.parameters()} == {"cpu"}  # the default
