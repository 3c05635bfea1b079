"""Knowledge-base fusion (eq. 1-2): shapes, attention weights, gradients, noise, options."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from crlsc_fl.augment.simclr import AugmentConfig
from crlsc_fl.kb.knowledge_base import KBConfig, KnowledgeBase
from crlsc_fl.loss.dcl_loss import DCLLoss
from crlsc_fl.methods import TrainConfig, build_method
from crlsc_fl.models.encoders import build_encoder
from crlsc_fl.models.modules.kb_fusion import FusionConfig, KnowledgeFusion
from crlsc_fl.validation import ConfigError, build_component

DIM = 16


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    vectors = np.random.default_rng(0).normal(size=(200, DIM))
    return KnowledgeBase.build(vectors, KBConfig(m=4, nbits=4), source="test")


@pytest.fixture(scope="module")
def flat_kb() -> KnowledgeBase:
    return KnowledgeBase.build(np.random.default_rng(1).normal(size=(100, DIM)), KBConfig(index_type="flat"))


def manual_attend(query: torch.Tensor, values: torch.Tensor, config: FusionConfig) -> torch.Tensor:
    """Eq. 1-2 written out per sample and per retrieved vector, in float64."""
    out = torch.zeros(query.shape, dtype=torch.float64)
    divisor = math.sqrt(query.shape[1]) if config.scale == "sqrt-d" else config.attention_temperature
    for b in range(query.shape[0]):
        scores = [float(query[b].double() @ values[b, i].double()) / divisor for i in range(values.shape[1])]
        if config.weights == "softmax":
            top = max(scores)
            exps = [math.exp(s - top) for s in scores]
            weights = [e / sum(exps) for e in exps]
            assert sum(weights) == pytest.approx(1.0)
        else:
            weights = scores
        for i, w in enumerate(weights):
            out[b] += w * values[b, i].double()
    return out


@pytest.mark.parametrize("weights", ["softmax", "raw"])
@pytest.mark.parametrize("scale", ["sqrt-d", "temperature"])
def test_attend_matches_eq_1_2(kb, weights: str, scale: str) -> None:
    config = FusionConfig(top_n=5, weights=weights, scale=scale, attention_temperature=0.3)
    fusion = KnowledgeFusion(kb, config)
    g = torch.Generator().manual_seed(0)
    query, values = torch.randn(3, DIM, generator=g), torch.randn(3, 5, DIM, generator=g)
    out = fusion.attend(query, values)
    assert out.shape == (3, DIM)
    assert torch.allclose(out.double(), manual_attend(query, values, config), atol=1e-5)


def test_softmax_output_is_a_convex_combination(kb) -> None:
    """Softmax weights sum to 1: identical values come back unchanged whatever the query."""
    fusion = KnowledgeFusion(kb, FusionConfig(top_n=4))
    value = torch.randn(2, 1, DIM)
    out = fusion.attend(torch.randn(2, DIM) * 10, value.expand(2, 4, DIM))
    assert torch.allclose(out, value[:, 0], atol=1e-5)
    raw = KnowledgeFusion(kb, FusionConfig(top_n=4, weights="raw"))
    assert not torch.allclose(raw.attend(torch.randn(2, DIM), value.expand(2, 4, DIM)), value[:, 0], atol=1e-3)


@pytest.mark.parametrize("query_mode", ["raw", "normalized"])
@pytest.mark.parametrize("noise_in_attention", [False, True])
def test_forward_shape(kb, query_mode: str, noise_in_attention: bool) -> None:
    fusion = KnowledgeFusion(kb, FusionConfig(top_n=7, query=query_mode, noise_in_attention=noise_in_attention))
    out = fusion(torch.randn(5, DIM), torch.Generator().manual_seed(0))
    assert out.shape == (5, DIM) and torch.isfinite(out).all()


def test_retrieve_without_noise_is_the_kb_search(flat_kb) -> None:
    fusion = KnowledgeFusion(flat_kb, FusionConfig(top_n=6, noise_variance=0.0))
    query = torch.randn(4, DIM)
    noisy, values = fusion.retrieve(query)
    _, _, expected = flat_kb.search(query.numpy(), 6)
    assert torch.equal(noisy, query) and values.shape == (4, 6, DIM)
    assert np.array_equal(values.numpy(), expected)
    assert not values.requires_grad


def test_noise_variance_changes_retrieval(flat_kb) -> None:
    query = torch.from_numpy(flat_kb.decoded_vectors()[:20].copy())
    clean = KnowledgeFusion(flat_kb, FusionConfig(top_n=5, noise_variance=0.0))
    noisy = KnowledgeFusion(flat_kb, FusionConfig(top_n=5, noise_variance=0.2))
    _, clean_values = clean.retrieve(query)
    assert torch.allclose(clean_values[:, 0], query, atol=1e-6)  # each vector retrieves itself first
    noisy_query, noisy_values = noisy.retrieve(query, torch.Generator().manual_seed(0))
    assert (noisy_query - query).var().item() == pytest.approx(0.2, rel=0.2)
    assert not torch.equal(noisy_values, clean_values)
    again = noisy.retrieve(query, torch.Generator().manual_seed(0))[1]
    assert torch.equal(again, noisy_values)  # the generator makes the noise reproducible


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (dict(weights="sparsemax"), "weights"),
        (dict(scale="log"), "scale"),
        (dict(query="whitened"), "query"),
        (dict(top_n=0), "top-n"),
        (dict(noise_variance=-0.1), "noise-variance"),
        (dict(attention_temperature=0.0), "attention-temperature"),
    ],
)
def test_invalid_options_name_the_field(options: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"fusion\.{field}="):  # the scenario key
        build_component(FusionConfig, options, "fusion")


@pytest.fixture
def crlsc_setup(kb):
    torch.manual_seed(0)
    encoder = build_encoder("resnet18", dim=DIM, hidden_dim=DIM)
    config = TrainConfig(batch_size=4, augment=AugmentConfig(size=16))
    method = build_method("crlsc", encoder, config, kb=kb, fusion=FusionConfig(top_n=5))
    g = torch.Generator().manual_seed(1)
    views = torch.rand(4, 3, 16, 16, generator=g), torch.rand(4, 3, 16, 16, generator=g)
    return method, encoder, views


def _encoder_grad_norm(encoder) -> float:
    return sum(p.grad.abs().sum().item() for p in encoder.backbone.parameters() if p.grad is not None)


def test_gradients_reach_the_encoder_through_training_loss(crlsc_setup) -> None:
    method, encoder, (v1, v2) = crlsc_setup
    method.training_loss(v1, v2).backward()
    assert _encoder_grad_norm(encoder) > 0
    assert encoder.backbone.conv1.weight.grad.abs().sum() > 0


def test_gradient_through_q_star_alone(crlsc_setup) -> None:
    """With p detached the only path to the encoder is q -> attention score -> q*."""
    method, encoder, (v1, v2) = crlsc_setup
    q = encoder(v1)
    p = encoder(v2).detach()
    q_star = method.fusion(q, method.generator)
    assert q_star.requires_grad
    DCLLoss(0.1)(q_star, p).backward()
    assert _encoder_grad_norm(encoder) > 0


def test_gradient_through_p_alone(crlsc_setup) -> None:
    method, encoder, (v1, v2) = crlsc_setup
    q_star = method.fusion(encoder(v1), method.generator).detach()
    DCLLoss(0.1)(q_star, encoder(v2)).backward()
    assert _encoder_grad_norm(encoder) > 0
