"""Building SKBs/PKBs from server models and local encoders, and the on-disk KB cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crlsc_fl.data.synthetic import make_synthetic_images
from crlsc_fl.kb.builders import build_image_kb, build_pkb, build_text_kb, content_key
from crlsc_fl.kb.knowledge_base import KBConfig
from crlsc_fl.kb.prompts import CLASS_NAMES, TEMPLATES, make_prompts
from crlsc_fl.models.encoders import build_encoder
from crlsc_fl.registry import UnknownNameError

pytestmark = pytest.mark.usefixtures("private_cache")


def _counting(monkeypatch: pytest.MonkeyPatch, server, method: str) -> list[int]:
    """Wrap ``server.<method>`` so that each call records its batch size."""
    calls: list[int] = []
    original = getattr(server, method)

    def wrapper(data, *args, **kwargs):
        calls.append(len(data))
        return original(data, *args, **kwargs)

    monkeypatch.setattr(server, method, wrapper)
    return calls


def test_text_skb_from_minilm_is_cached(minilm, private_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting(monkeypatch, minilm, "encode_text")
    config = KBConfig(m=48, nbits=3)
    kb = build_text_kb(minilm, "cifar10", "paper", config)
    assert (kb.count, kb.dim) == (10, 384) and calls == [10]
    assert kb.metadata.source == "text:cifar10-names:paper" and kb.metadata.modality == "text"
    assert kb.metadata.model == "minilm:all-MiniLM-L6-v2"
    assert len(list((private_cache / "kb").glob("*.kb"))) == 1

    again = build_text_kb(minilm, "cifar10", "paper", config)
    assert calls == [10]  # read from the cache, not encoded again
    assert again.to_bytes() == kb.to_bytes()

    build_text_kb(minilm, "cifar10", "paper", KBConfig(m=48, nbits=2))  # another config: another entry
    assert calls == [10, 10] and len(list((private_cache / "kb").glob("*.kb"))) == 2
    build_text_kb(minilm, "cifar10", "paper", config, use_cache=False)
    assert calls == [10, 10, 10]


def test_text_skb_vectors_match_the_prompts(minilm) -> None:
    kb = build_text_kb(minilm, "cifar10", "paper", KBConfig(index_type="flat"))
    prompts = make_prompts("cifar10", "paper")
    assert prompts[0] == "a photo of a airplane." and len(prompts) == 10
    expected = minilm.encode_text(prompts)
    assert np.allclose(kb.decoded_vectors(), expected, atol=1e-5)
    _, ids, _ = kb.search(minilm.encode_text(["a picture of a cat"]), 1)
    assert prompts[ids[0, 0]] == "a photo of a cat."


def test_tiny_open_clip_image_and_text_skbs(tiny_clip, monkeypatch: pytest.MonkeyPatch) -> None:
    images, _ = make_synthetic_images(12, image_size=24, seed=0)
    image_calls = _counting(monkeypatch, tiny_clip, "encode_images")
    image_kb = build_image_kb(tiny_clip, images, "synthetic-public", KBConfig(m=8, nbits=3))
    assert (image_kb.count, image_kb.dim) == (12, 64)
    assert image_kb.metadata.modality == "image" and image_kb.metadata.source == "image:synthetic-public"
    assert image_kb.metadata.model == tiny_clip.identity == "open_clip:crlsc-tiny-test:random-init"
    assert build_image_kb(tiny_clip, images, "synthetic-public", KBConfig(m=8, nbits=3)).to_bytes() == image_kb.to_bytes()
    assert image_calls == [12]
    build_image_kb(tiny_clip, images[:10], "synthetic-public", KBConfig(m=8, nbits=3))  # other images: rebuilt
    assert image_calls == [12, 10]

    text_kb = build_text_kb(tiny_clip, "cifar10", "paper", KBConfig(m=8, nbits=3))
    assert (text_kb.count, text_kb.dim) == (10, 64) and text_kb.metadata.modality == "text"


def test_pkb_from_a_local_encoder() -> None:
    torch.manual_seed(0)
    encoder = build_encoder("resnet18", dim=16, hidden_dim=16)
    images, _ = make_synthetic_images(20, image_size=16, seed=0)
    kb = build_pkb(encoder, images, KBConfig(m=4, nbits=4), source="device-3", round=2)
    assert (kb.count, kb.dim) == (20, 16)
    assert kb.metadata.source == "pkb:device-3" and kb.metadata.model == "local:resnet18"
    assert kb.metadata.extra["round"] == 2
    kb.check_dim(encoder.dim)


def test_content_key_depends_on_every_part() -> None:
    a = np.zeros((2, 2), dtype=np.uint8)
    assert content_key("x", a, 1) == content_key("x", a.copy(), 1)
    assert len({content_key("x", a, 1), content_key("y", a, 1), content_key("x", a + 1, 1), content_key("x", a, 2)}) == 4


def test_corrupt_cache_entry_is_rebuilt_with_a_warning(minilm, private_cache: Path) -> None:
    config = KBConfig(m=48, nbits=3)
    original = build_text_kb(minilm, "cifar10", "paper", config).to_bytes()
    (entry,) = (private_cache / "kb").glob("*.kb")
    entry.write_bytes(b"not a kb")
    with pytest.warns(UserWarning, match=f"rebuilding the damaged cached knowledge base {entry}"):
        rebuilt = build_text_kb(minilm, "cifar10", "paper", config)
    assert rebuilt.to_bytes() == original == entry.read_bytes()


def test_prompt_registries() -> None:
    assert CLASS_NAMES.names() == ["cifar10", "cifar100", "imagenet"]
    assert len(CLASS_NAMES.get("cifar100")()) == 100 and len(CLASS_NAMES.get("imagenet")()) == 1000
    assert TEMPLATES.names() == ["openai", "paper", "simple"]
    with pytest.raises(UnknownNameError, match="unknown class-name list 'mnist'; valid: cifar10, cifar100, imagenet"):
        make_prompts("mnist", "paper")
    with pytest.raises(UnknownNameError, match="valid: openai, paper, simple"):
        make_prompts("cifar10", "fancy")
    assert all("{}" not in p for p in make_prompts("cifar10", "simple"))
