"""Server models S_e: offline MiniLM and open_clip (a tiny randomly initialised config)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crlsc_fl.data.synthetic import make_synthetic_images
from crlsc_fl.models.server_models import SERVER_MODELS, OpenClipEncoder, build_server_model
from crlsc_fl.registry import UnknownNameError

SENTENCES = ["a photo of a cat.", "a photo of a kitten.", "a photo of a truck.", "the quarterly tax report is overdue"]


def test_registry_lists_valid_names() -> None:
    assert SERVER_MODELS.names() == ["efficientnet-lite0", "efficientnet-lite2", "minilm", "open_clip"]
    with pytest.raises(UnknownNameError, match="unknown server model 'bert'; valid: efficientnet-lite0, efficientnet-lite2, minilm, open_clip"):
        build_server_model("bert")


@pytest.fixture(scope="module")
def lite0():
    """The real ImageNet EfficientNet-Lite0 at 64 px (cheap enough for tests)."""
    return build_server_model("efficientnet-lite0", image_size=64)


def test_efficientnet_lite_vectors(lite0) -> None:
    images, _ = make_synthetic_images(6, num_classes=3, image_size=32, seed=0)
    vectors = lite0.encode("image", images)
    assert vectors.shape == (6, 1280) and vectors.dtype == np.float32 and lite0.dim == 1280
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(lite0.encode_images(images, batch_size=4), vectors, atol=1e-5)  # batching, eval mode
    assert lite0.identity == "efficientnet-lite0:imagenet1k:64px" and lite0.modalities == ("image",)
    with pytest.raises(ValueError, match="has no text tower"):
        lite0.encode_text(["a cat"])
    with pytest.raises(ValueError, match="image_size=16 must be >= 32"):
        build_server_model("efficientnet-lite2", image_size=16)


@pytest.mark.cifar10
def test_efficientnet_lite_knows_cifar10_classes(lite0, cifar10_dir: Path) -> None:
    """Pre-trained ImageNet features separate CIFAR-10 classes that random features do not:
    nearest class centroid on 60 training / 40 test images of airplane vs frog."""
    from crlsc_fl.data import load_dataset

    train = load_dataset("cifar10", "train", cifar10_dir, download=False)
    picked = np.concatenate([np.flatnonzero(train.labels == c)[:50] for c in (0, 6)])
    vectors, labels = lite0.encode_images(np.asarray(train.images[picked])), train.labels[picked]
    fit, held = np.r_[0:30, 50:80], np.r_[30:50, 80:100]
    centroids = np.stack([vectors[fit][labels[fit] == c].mean(0) for c in (0, 6)])
    predicted = np.array([0, 6])[(vectors[held] @ centroids.T).argmax(1)]
    assert (predicted == labels[held]).mean() >= 0.9


def test_minilm_vectors(minilm) -> None:
    vectors = minilm.encode_text(SENTENCES)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32 and minilm.dim == 384
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors, minilm.encode_text(SENTENCES))  # deterministic
    assert np.allclose(minilm.encode("text", SENTENCES[:2]), vectors[:2], atol=1e-6)
    sim = vectors @ vectors.T
    assert sim[0, 1] > sim[0, 2] > sim[0, 3]  # cat~kitten > cat~truck > cat~tax report
    assert sim[0, 1] > 0.7 and sim[0, 3] < 0.3


def test_minilm_has_no_image_tower(minilm) -> None:
    assert minilm.modalities == ("text",) and minilm.identity == "minilm:all-MiniLM-L6-v2"
    with pytest.raises(ValueError, match=r"cannot encode modality 'image'; valid: \('text',\)"):
        minilm.encode("image", np.zeros((1, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="has no image tower"):
        minilm.encode_images(np.zeros((1, 8, 8, 3), dtype=np.uint8))


def test_tiny_open_clip_encodes_both_modalities(tiny_clip) -> None:
    assert tiny_clip.dim == 64 and tiny_clip.modalities == ("image", "text")
    images, _ = make_synthetic_images(5, num_classes=5, image_size=20, seed=0)  # resized to the tower's 32x32
    image_vectors = tiny_clip.encode("image", images)
    text_vectors = tiny_clip.encode("text", SENTENCES)
    assert image_vectors.shape == (5, 64) and text_vectors.shape == (4, 64)
    for v in (image_vectors, text_vectors):
        assert v.dtype == np.float32 and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.allclose(tiny_clip.encode_images(images, batch_size=2), image_vectors, atol=1e-5)  # batching
    assert np.allclose(tiny_clip.encode_text(SENTENCES, batch_size=3), text_vectors, atol=1e-5)
    with pytest.raises(ValueError, match=r"cannot encode modality 'audio'; valid: \('image', 'text'\)"):
        tiny_clip.encode("audio", images)


def test_open_clip_checkpoint_file(tiny_clip, tiny_clip_name: str, tmp_path: Path) -> None:
    path = tmp_path / "tiny.pt"
    torch.save(tiny_clip._model.state_dict(), path)
    torch.manual_seed(123)  # a different random init, overwritten by the checkpoint
    loaded = OpenClipEncoder(model_name=tiny_clip_name, pretrained=str(path))
    images, _ = make_synthetic_images(4, num_classes=2, image_size=32, seed=1)
    assert np.allclose(loaded.encode_images(images), tiny_clip.encode_images(images), atol=1e-6)
    assert np.allclose(loaded.encode_text(SENTENCES), tiny_clip.encode_text(SENTENCES), atol=1e-6)
    assert loaded.identity.startswith(f"open_clip:{tiny_clip_name}:") and loaded.identity != tiny_clip.identity
    torch.manual_seed(123)
    fresh = OpenClipEncoder(model_name=tiny_clip_name)
    assert not np.allclose(fresh.encode_text(SENTENCES), tiny_clip.encode_text(SENTENCES), atol=1e-3)


def test_open_clip_unknown_pretrained_tag_lists_valid_tags() -> None:
    # checked before any weights are looked for, so this needs no internet
    with pytest.raises(ValueError, match=r"pretrained='no-such-tag' is neither a checkpoint file nor a tag of ViT-B-32; valid tags: .*openai"):
        OpenClipEncoder(model_name="ViT-B-32", pretrained="no-such-tag")


def test_open_clip_tiny_config_has_no_tags(tiny_clip_name: str) -> None:
    with pytest.raises(ValueError, match=r"valid tags: \(none\)"):
        OpenClipEncoder(model_name=tiny_clip_name, pretrained="openai")


def test_open_clip_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown open_clip model 'ViT-Z-99'; valid: .*ViT-B-32"):
        build_server_model("open_clip", model_name="ViT-Z-99")
