"""Every registered method's declared needs: :meth:`Stage1Method.build` gives a method
exactly the inputs it declares, refuses a missing need and an input it does not use, each
with a message naming the method and the input; a scenario that cannot supply what its
``train.kb-method`` needs is refused, with the key and what is allowed."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from crlsc_fl.augment.simclr import AugmentConfig
from crlsc_fl.data.synthetic import make_synthetic_images
from crlsc_fl.kb.anchors import AnchorSet
from crlsc_fl.kb.knowledge_base import KBConfig, KnowledgeBase
from crlsc_fl.methods import METHODS, PLAIN_METHOD, MethodInputs, Need, TrainConfig, build_method, describe, methods_using
from crlsc_fl.methods.grounded import GroundingConfig
from crlsc_fl.models.encoders import build_encoder
from crlsc_fl.models.modules.kb_fusion import FusionConfig
from crlsc_fl.scenario.config import ConfigError, ScenarioConfig, from_flat

DIM, SIZE = 16, 16
CONFIG = TrainConfig(batch_size=8, lr=1e-3, seed=0, augment=AugmentConfig(size=SIZE))


def _inputs(needs: frozenset[Need] | set[Need]) -> MethodInputs:
    """One input of each kind in ``needs`` (the others left out)."""
    rng = np.random.default_rng(0)
    images, labels = make_synthetic_images(10, image_size=SIZE, seed=1)
    anchors = AnchorSet(images, np.eye(10, DIM, dtype=np.float32)[labels], source="mentor")
    peer_keys = rng.normal(size=(10, DIM)).astype(np.float32)
    every = {
        Need.KB: KnowledgeBase.build(rng.normal(size=(64, DIM)), KBConfig(index_type="flat"), source="test"),
        Need.ANCHORS: anchors,
        Need.FUSION: FusionConfig(top_n=5),
        Need.PEER_KEYS: (anchors.with_keys(peer_keys / np.linalg.norm(peer_keys, axis=1, keepdims=True), source="peer"),),
    }
    return MethodInputs(**{need.value: every[need] for need in needs})


def _encoder():  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return build_encoder("resnet18", dim=DIM, hidden_dim=DIM)


NEEDED = [(name, need) for name in METHODS.names() for need in sorted(METHODS.get(name).needs)]
UNUSED = [(name, need) for name in METHODS.names() for need in Need if need not in METHODS.get(name).uses()]


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_declares_what_it_needs(name: str) -> None:
    method = METHODS.get(name)
    assert method.name == name
    assert all(isinstance(need, Need) for need in method.uses())
    assert not method.needs & method.optional, "a need is either required or optional"
    if method.settings_table is not None:  # a scenario table, whose validated config the method takes
        settings = ScenarioConfig().tables()[method.settings_table]
        assert method.build(_encoder(), CONFIG, _inputs(method.needs), settings).name == name


def test_the_plain_method_needs_nothing() -> None:
    assert PLAIN_METHOD in METHODS and not METHODS.get(PLAIN_METHOD).uses()
    assert PLAIN_METHOD not in methods_using(Need.KB)


@pytest.mark.parametrize("name", METHODS.names())
def test_build_gives_a_method_what_it_uses_and_nothing_else(name: str) -> None:
    method_class = METHODS.get(name)
    inputs = _inputs(method_class.uses())
    method = method_class.build(_encoder(), CONFIG, inputs)
    assert (method.kb is inputs.kb) if Need.KB in method_class.uses() else method.kb is None
    if Need.FUSION in method_class.uses():
        assert method.fusion_config is inputs.fusion  # type: ignore[attr-defined]
    if Need.ANCHORS in method_class.uses():
        assert method.anchors is inputs.anchors  # type: ignore[attr-defined]
    images, _ = make_synthetic_images(16, image_size=SIZE, seed=0)
    assert np.isfinite(method.fit(images, steps=1).epoch_losses[0])


@pytest.mark.parametrize(("name", "need"), NEEDED, ids=[f"{n}-{d}" for n, d in NEEDED])
def test_build_refuses_a_missing_need(name: str, need: Need) -> None:
    method_class = METHODS.get(name)
    with pytest.raises(ValueError, match=f"^{re.escape(f'method {name!r} needs {need.description}; got none')}$"):
        method_class.build(_encoder(), CONFIG, _inputs(method_class.uses() - {need}))


@pytest.mark.parametrize(("name", "need"), UNUSED, ids=[f"{n}-{d}" for n, d in UNUSED])
def test_build_refuses_an_input_the_method_does_not_use(name: str, need: Need) -> None:
    """A method without a KB need gets no KB: a plan that sent one would count bytes for nothing."""
    method_class = METHODS.get(name)
    message = f"method {name!r} does not use {need.description}; it uses {describe(method_class.uses())}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        method_class.build(_encoder(), CONFIG, _inputs(method_class.needs | {need}))


def test_describe_lists_inputs_in_declaration_order() -> None:
    assert describe({Need.FUSION, Need.KB}) == "a knowledge base and fusion settings"
    assert describe(()) == "nothing"


@pytest.mark.parametrize("name", methods_using(Need.PEER_KEYS))
def test_peer_keys_replace_the_mentors_keys(name: str) -> None:
    """With peers' anchor keys a method built from its inputs trains exactly as one given
    them as the device's only alignment targets (``mentor_keys=False``) by its constructor."""
    method_class = METHODS.get(name)
    inputs = _inputs(method_class.needs | {Need.PEER_KEYS})
    grounding = GroundingConfig(anchor_batch=4)
    built = method_class.build(_encoder(), CONFIG, inputs, grounding)
    direct = build_method(name, _encoder(), CONFIG, fusion=inputs.fusion, anchors=inputs.anchors, grounding=grounding,
                          peer_anchors=list(inputs.peer_keys), mentor_keys=False)
    images, _ = make_synthetic_images(16, image_size=SIZE, seed=0)
    assert built.fit(images, steps=2).epoch_losses == direct.fit(images, steps=2).epoch_losses


@pytest.mark.parametrize("name", [n for n in METHODS.names() if METHODS.get(n).settings_table is not None])
def test_a_methods_settings_must_be_its_own_tables_config(name: str) -> None:
    method_class = METHODS.get(name)
    with pytest.raises(TypeError, match=re.escape(f"method {name!r} takes its settings from [{method_class.settings_table}]")):
        method_class.build(_encoder(), CONFIG, _inputs(method_class.needs), FusionConfig())


KB_METHODS = methods_using(Need.KB)  # the values train.kb-method allows


@pytest.mark.parametrize("name", KB_METHODS)
def test_the_scenario_refuses_a_kb_method_that_needs_anchors_it_has_none_of(name: str) -> None:
    without = {"train.kb-method": name, "kb.anchors": 0}
    if Need.ANCHORS in METHODS.get(name).needs:
        with pytest.raises(ConfigError, match=f"^{re.escape(f'train.kb-method={name!r} needs anchors to ground the devices: set kb.anchors > 0')}$"):
            from_flat(without)
    else:
        assert from_flat(without).train.kb_method == name
    assert from_flat({**without, "kb.anchors": 8}).kb.anchors == 8


@pytest.mark.parametrize("knowledge", ["anchor-pkb", "random-anchor-pkb"])
@pytest.mark.parametrize("name", KB_METHODS)
def test_anchor_keyed_peer_knowledge_needs_a_kb_method_that_takes_peers_keys(name: str, knowledge: str) -> None:
    values = {"train.kb-method": name, "kb.anchors": 8, "topology.peer-knowledge": knowledge}
    if Need.PEER_KEYS in METHODS.get(name).uses():
        assert from_flat(values).topology.peer_knowledge == knowledge
        return
    takers = " or ".join(repr(n) for n in KB_METHODS if Need.PEER_KEYS in METHODS.get(n).uses())
    message = (f"topology.peer-knowledge={knowledge!r} keys peers' knowledge by the anchors: "
               f"it needs train.kb-method={takers} (got {name!r}), or use 'pkb'")
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        from_flat(values)
