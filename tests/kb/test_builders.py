"""Building PKBs from local encoders, and the on-disk KB cache (SKBs: test_mentor.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crlsc_fl.data.synthetic import make_synthetic_images
from crlsc_fl.eval.features import encode_images
from crlsc_fl.kb.anchors import AnchorSet
from crlsc_fl.kb.builders import build_anchor_pkb, build_pkb, cached_kb, content_key
from crlsc_fl.kb.knowledge_base import KBConfig, KnowledgeBase
from crlsc_fl.kb.prompts import CLASS_NAMES, TEMPLATES, make_prompts
from crlsc_fl.models.encoders import build_encoder
from crlsc_fl.registry import UnknownNameError

pytestmark = pytest.mark.usefixtures("private_cache")


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


def test_cached_kb_builds_once_and_rebuilds_a_damaged_entry(private_cache: Path) -> None:
    calls: list[int] = []

    def build() -> KnowledgeBase:
        calls.append(1)
        return KnowledgeBase.build(np.eye(4, 8), KBConfig(index_type="flat"), source="test")

    original = cached_kb("k1", build).to_bytes()
    assert cached_kb("k1", build).to_bytes() == original and calls == [1]
    (entry,) = (private_cache / "kb").glob("*.kb")
    entry.write_bytes(b"not a kb")
    with pytest.warns(UserWarning, match=f"rebuilding the damaged cached knowledge base {entry}"):
        rebuilt = cached_kb("k1", build)
    assert rebuilt.to_bytes() == original == entry.read_bytes() and calls == [1, 1]
    cached_kb("k1", build, use_cache=False)
    assert calls == [1, 1, 1]


def test_prompt_registries() -> None:
    assert CLASS_NAMES.names() == ["cifar10", "cifar100", "imagenet"]
    assert len(CLASS_NAMES.get("cifar100")()) == 100 and len(CLASS_NAMES.get("imagenet")()) == 1000
    assert TEMPLATES.names() == ["openai", "paper", "simple"]
    with pytest.raises(UnknownNameError, match="unknown class-name list 'mnist'; valid: cifar10, cifar100, imagenet"):
        make_prompts("mnist", "paper")
    with pytest.raises(UnknownNameError, match="valid: openai, paper, simple"):
        make_prompts("cifar10", "fancy")
    assert all("{}" not in p for p in make_prompts("cifar10", "simple"))


def test_anchor_pkb_is_the_encoders_unit_view_of_the_anchors() -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(6, 16, 16, 3), dtype=np.uint8)
    anchors = AnchorSet(images, np.eye(6, 8, dtype=np.float32), source="mentor")
    encoder = build_encoder("resnet18", dim=8, hidden_dim=16)
    pkb = build_anchor_pkb(encoder, anchors, source="d3")
    expected = torch.nn.functional.normalize(encode_images(encoder, images, kind="projection"), dim=1).numpy()
    assert pkb.source == "anchor-pkb:d3" and np.array_equal(pkb.images, images)
    np.testing.assert_allclose(pkb.keys, expected, atol=1e-6)
