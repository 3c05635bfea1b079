"""Stage-1 methods: one fit step each, registry and KB errors, resumable training state."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch

from crlsc_fl.augment.simclr import AugmentConfig
from crlsc_fl.data.synthetic import make_synthetic_images
from crlsc_fl.kb.anchors import AnchorSet, AnchorSetError
from crlsc_fl.kb.knowledge_base import KBConfig, KnowledgeBase, KnowledgeBaseError
from crlsc_fl.methods import METHODS, FitResult, TrainConfig, build_method
from crlsc_fl.methods.grounded import GroundingConfig
from crlsc_fl.models.encoders import build_encoder
from crlsc_fl.models.modules.kb_fusion import FusionConfig
from crlsc_fl.registry import UnknownNameError
from crlsc_fl.validation import ConfigError, build_component

DIM = 16
SIZE = 16


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return make_synthetic_images(16, image_size=SIZE, seed=0)[0]


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.build(np.random.default_rng(0).normal(size=(64, DIM)), KBConfig(m=4, nbits=4), source="test")


def _anchors() -> AnchorSet:
    images, labels = make_synthetic_images(10, image_size=SIZE, seed=1)
    return AnchorSet(images, np.eye(10, DIM, dtype=np.float32)[labels])


def _config(**overrides) -> TrainConfig:
    return TrainConfig(**({"batch_size": 8, "lr": 1e-3, "augment": AugmentConfig(size=SIZE)} | overrides))


def _method(name: str, kb: KnowledgeBase, config: TrainConfig | None = None, seed: int = 0, **options):
    torch.manual_seed(seed)
    encoder = build_encoder("resnet18", dim=DIM, hidden_dim=DIM)
    extra = {"kb": kb, "fusion": FusionConfig(top_n=5)} if name == "crlsc" else {}
    if name == "crlsc-grounded":
        extra = {"kb": kb, "anchors": _anchors(), "grounding": GroundingConfig(anchor_batch=4)}
    if name == "nnclr":
        extra["queue_size"] = 8  # full after one batch, so the second step uses neighbours
    return build_method(name, encoder, config or _config(), **extra, **options)


def test_registry() -> None:
    assert METHODS.names() == ["crlsc", "crlsc-grounded", "dcl", "nnclr", "simclr"]


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_trains(name: str, images: np.ndarray, kb: KnowledgeBase) -> None:
    method = _method(name, kb)
    before = {k: v.clone() for k, v in method.encoder.state_dict().items()}
    result = method.fit(images, epochs=1)
    assert isinstance(result, FitResult)
    assert result.steps == 2 and len(result.epoch_losses) == 1 and np.isfinite(result.epoch_losses[0])
    assert result.mean_step_seconds > 0
    after = method.encoder.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith("weight"))
    assert method.encoder.training  # fit leaves the encoder in training mode
    if name == "nnclr":
        assert method.queue.shape == (8, DIM)


def test_unknown_method_lists_names() -> None:
    with pytest.raises(UnknownNameError, match="unknown method 'byol'; valid: crlsc, crlsc-grounded, dcl, nnclr, simclr"):
        build_method("byol", build_encoder("resnet18", dim=DIM, hidden_dim=DIM))


def test_crlsc_needs_a_kb() -> None:
    with pytest.raises(ValueError, match="method 'crlsc' needs a knowledge base"):
        build_method("crlsc", build_encoder("resnet18", dim=DIM, hidden_dim=DIM))


def test_kb_dim_must_match_encoder_dim(kb: KnowledgeBase) -> None:
    with pytest.raises(KnowledgeBaseError, match=f"encoder output dimension 32 does not match the knowledge base dimension {DIM}"):
        build_method("crlsc", build_encoder("resnet18", dim=32, hidden_dim=32), kb=kb)
    method = _method("dcl", kb)
    wrong = KnowledgeBase.build(np.ones((4, 8)), KBConfig(index_type="flat"))
    with pytest.raises(KnowledgeBaseError):
        method.set_knowledge_base(wrong)


def test_kb_can_be_swapped(kb: KnowledgeBase, images: np.ndarray) -> None:
    method = _method("crlsc", kb)
    other = KnowledgeBase.build(np.random.default_rng(5).normal(size=(40, DIM)), KBConfig(index_type="flat"))
    method.set_knowledge_base(other)
    assert method.kb is other and method.fusion.kb is other
    with pytest.raises(ValueError, match="needs a knowledge base"):
        method.set_knowledge_base(None)


@pytest.mark.parametrize("name", METHODS.names())
def test_training_state_round_trip_resumes(name: str, images: np.ndarray, kb: KnowledgeBase) -> None:
    config = _config(total_epochs=3)
    original = _method(name, kb, config)
    original.fit(images, epochs=1)
    state = copy.deepcopy(original.training_state())  # state_dict() tensors are live views: copy
    expected = original.fit(images, epochs=1).epoch_losses

    resumed = _method(name, kb, config, seed=99)  # other initial weights, overwritten by the state
    resumed.load_training_state(state, steps_per_epoch=2, first_call_steps=2)
    assert resumed.fit(images, epochs=1).epoch_losses == pytest.approx(expected, rel=1e-5)
    for key, value in original.encoder.state_dict().items():
        assert torch.allclose(value.float(), resumed.encoder.state_dict()[key].float(), atol=1e-5), key


def test_training_state_without_optimizer_keeps_the_schedule(images: np.ndarray, kb: KnowledgeBase) -> None:
    config = _config(total_epochs=4)
    original = _method("dcl", kb, config)
    original.fit(images, epochs=1)
    state = copy.deepcopy(original.training_state(with_optimizer=False))
    assert state["optimizer"] is None
    resumed = _method("dcl", kb, config)
    resumed.load_training_state(state, steps_per_epoch=2, first_call_steps=2)
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(original.optimizer.param_groups[0]["lr"])
    assert resumed.scheduler.last_epoch == original.scheduler.last_epoch == 2
    # same weights and RNG: the first loss (computed before any update) is the same
    loss_a = original.fit(images[:8], epochs=1).epoch_losses[0]
    loss_b = resumed.fit(images[:8], epochs=1).epoch_losses[0]
    assert loss_a == pytest.approx(loss_b, rel=1e-5)


def test_cosine_schedule_ends_at_zero(images: np.ndarray, kb: KnowledgeBase) -> None:
    method = _method("dcl", kb, _config(lr=0.01))
    method.fit(images, epochs=2)
    assert method.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [(dict(batch_size=1), "train.batch-size=1: Input should be greater than or equal to 2"),
     (dict(lr=0.0), "train.lr=0.0: Input should be greater than 0"), (dict(temperature=-1.0), "train.temperature=-1.0")],
)
def test_bad_train_config(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_component(TrainConfig, overrides, "train")


def test_bad_fit_arguments(images: np.ndarray, kb: KnowledgeBase) -> None:
    method = _method("dcl", kb)
    with pytest.raises(ValueError, match="epochs=-1 must be >= 0"):
        method.fit(images, epochs=-1)
    with pytest.raises(ValueError, match="at least 2 images"):
        method.fit(images[:1], epochs=1)
    with pytest.raises(ValueError, match="queue_size=0 must be >= 1"):
        build_method("nnclr", method.encoder, queue_size=0)


def test_grounded_anchors_must_match_the_encoder(kb: KnowledgeBase) -> None:
    method = _method("crlsc-grounded", kb)
    wrong = AnchorSet(np.zeros((4, SIZE, SIZE, 3), np.uint8), np.ones((4, DIM + 1)))
    with pytest.raises(AnchorSetError, match=f"output dimension {DIM} does not match the anchor keys' dimension {DIM + 1}"):
        method.set_anchors(wrong)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [(dict(anchor_batch=0), "grounding.anchor-batch=0: Input should be greater than or equal to 1"),
     (dict(align_weight=-1.0), "grounding.align-weight=-1.0: Input should be greater than or equal to 0"),
     (dict(align_temperature=0.0), "grounding.align-temperature=0.0: Input should be greater than 0"),
     (dict(targets="hard"), "grounding.targets='hard': Input should be 'soft' or 'onehot'"),
     (dict(target_temperature=0.0), "grounding.target-temperature=0.0: Input should be greater than 0")],
)
def test_bad_grounding_config(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_component(GroundingConfig, overrides, "grounding")


def test_grounded_without_a_kb_trains_on_anchors_alone(images: np.ndarray, kb: KnowledgeBase) -> None:
    method = _method("crlsc-grounded", kb)
    method.set_knowledge_base(None)
    assert method.kb is None and method.fusion is None
    assert np.isfinite(method.fit(images, epochs=1).epoch_losses[0])
    torch.manual_seed(0)
    fresh = build_method("crlsc-grounded", build_encoder("resnet18", dim=DIM, hidden_dim=DIM), _config(), anchors=_anchors())
    assert fresh.kb is None and np.isfinite(fresh.fit(images, epochs=1).epoch_losses[0])


LEVERS = [dict(one_pass=True), dict(channels_last=True), dict(precision="bfloat16"),
          dict(one_pass=True, channels_last=True, precision="bfloat16")]


@pytest.mark.parametrize("levers", LEVERS, ids=lambda d: "+".join(d))
@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_trains_with_each_step_lever(name: str, levers: dict, images: np.ndarray, kb: KnowledgeBase) -> None:
    if levers.get("precision") == "bfloat16":  # 32 px: 16 px is refused on the CPU (test_bfloat16_refuses_...)
        images = make_synthetic_images(16, image_size=32, seed=0)[0]
        levers = {**levers, "augment": AugmentConfig(size=32)}
    method = _method(name, kb, _config(**levers))
    result = method.fit(images, epochs=1)
    assert result.steps == 2 and np.isfinite(result.epoch_losses[0])
    if levers.get("channels_last"):
        assert method.encoder.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("levers", LEVERS[:2], ids=lambda d: "+".join(d))
def test_layout_and_one_pass_keep_the_embeddings(levers: dict, images: np.ndarray, kb: KnowledgeBase) -> None:
    """channels_last is a layout: the same numbers. one_pass joins BatchNorm batches, which
    changes training-mode statistics, but in eval mode each image's embedding is its own."""
    x = torch.rand(6, 3, SIZE, SIZE)
    plain, levered = _method("dcl", kb), _method("dcl", kb, _config(**levers))
    for method in (plain, levered):
        method.encoder.eval()
    expected = plain.embed((x[:3],), (x[3:],))
    got = levered.embed((x[:3],), (x[3:],))
    for a, b in zip(expected, got):
        assert a.dtype == b.dtype == torch.float32
        assert torch.allclose(a, b, atol=1e-5)


def test_bfloat16_embeddings_are_float32_and_close(images: np.ndarray, kb: KnowledgeBase) -> None:
    x = torch.rand(4, 3, SIZE, SIZE)
    plain, half = _method("dcl", kb), _method("dcl", kb, _config(precision="bfloat16"))
    for method in (plain, half):
        method.encoder.eval()
    (a,), (b,) = plain.embed((x,)), half.embed((x,))
    assert b.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.95


def test_fit_by_steps_crosses_epochs_and_keeps_the_schedule(images: np.ndarray, kb: KnowledgeBase) -> None:
    method = _method("dcl", kb, _config(total_steps=10))  # 16 images, batch 8: 2 steps per epoch
    first = method.fit(images, steps=5)
    assert first.steps == 5 and len(first.epoch_losses) == 3  # 2 + 2 + 1 steps
    assert method.scheduler.T_max == 10 and method.scheduler.last_epoch == 5
    method.fit(images, steps=5)
    assert method.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="steps=-1 must be >= 0"):
        method.fit(images, steps=-1)


def test_fit_by_steps_equals_fit_by_epochs(images: np.ndarray, kb: KnowledgeBase) -> None:
    by_epochs = _method("dcl", kb).fit(images, epochs=2).epoch_losses
    by_steps = _method("dcl", kb).fit(images, steps=4).epoch_losses
    assert by_steps == pytest.approx(by_epochs, rel=1e-6)


def test_bad_precision_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=re.escape("train.precision='float16': Input should be 'float32' or 'bfloat16'")):
        build_component(TrainConfig, {"precision": "float16"}, "train")


@pytest.mark.parametrize("name", METHODS.names())
def test_accelerator_explicit_cpu_device_trains_exactly_as_the_default(name: str, images: np.ndarray, kb: KnowledgeBase) -> None:
    default, explicit = _method(name, kb), _method(name, kb, device="cpu")
    assert explicit.device == torch.device("cpu") and default.device == torch.device("cpu")
    assert default.fit(images, steps=3).epoch_losses == explicit.fit(images, steps=3).epoch_losses
    for key, value in default.encoder.state_dict().items():
        assert torch.equal(value, explicit.encoder.state_dict()[key]), key


@pytest.mark.parametrize("name", ["dcl", "simclr", "nnclr", "crlsc-grounded"])
def test_accelerator_a_training_step_runs_on_the_methods_device(name: str, images: np.ndarray) -> None:
    """On ``meta`` (placement without a GPU) a whole step runs: batches, views, anchors,
    loss, backward and Adam; it stops only where the loss is read back as a number. A tensor
    left on the CPU would fail earlier, with a device mismatch. (``crlsc`` retrieves from
    FAISS through host memory, which ``meta`` has no data for.)"""
    method = _method(name, None, device="meta")  # type: ignore[arg-type]  (grounded: the anchor term only, no FAISS)
    assert method.device == torch.device("meta")
    with pytest.raises(RuntimeError, match=r"item\(\) cannot be called on meta tensors"):
        method.fit(images, steps=1)
    assert {p.device.type for p in method.encoder.parameters()} == {"meta"}
    assert method.optimizer is not None and method.optimizer.state  # Adam stepped
    assert {t.device.type for s in method.optimizer.state.values() for t in s.values() if t.dim()} == {"meta"}
    if name == "nnclr":
        assert method.queue.device.type == "meta" and len(method.queue) == 8
    if name == "crlsc-grounded":
        assert method._anchor_keys.device.type == method._anchor_targets.device.type == "meta"


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")  # meta weights hold no data
def test_accelerator_nnclr_queue_is_stored_on_the_cpu_and_loaded_onto_the_device(images: np.ndarray, kb: KnowledgeBase) -> None:
    trained = _method("nnclr", kb)
    trained.fit(images, steps=1)
    state = trained.training_state(with_optimizer=False)
    assert state["extra"]["queue"].device.type == "cpu"
    elsewhere = _method("nnclr", kb, device="meta")
    elsewhere.load_training_state(state, steps_per_epoch=2, first_call_steps=2)
    assert elsewhere.queue.device.type == "meta" and elsewhere.queue.shape == trained.queue.shape


@pytest.mark.parametrize(("size", "stem", "refused"), [(16, "imagenet", True), (32, "imagenet", False), (16, "cifar", False)])
def test_bfloat16_refuses_the_known_wrong_cpu_kernel(size: int, stem: str, refused: bool, kb: KnowledgeBase) -> None:
    """oneDNN's bf16 weight gradient of a strided 3x3 conv over a 1x1 map is garbage: 16 px
    images with the imagenet stem reach one in layer4, 32 px images do not."""
    images = make_synthetic_images(16, image_size=size, seed=0)[0]
    torch.manual_seed(0)
    method = build_method("dcl", build_encoder("resnet18", dim=DIM, hidden_dim=DIM, stem=stem),
                          _config(precision="bfloat16", augment=AugmentConfig(size=size)))
    if refused:
        with pytest.raises(ValueError, match=r"train.precision='bfloat16' on the CPU with 16x16 images: backbone.layer4.0.conv1"):
            method.fit(images, epochs=1)
        assert method.optimizer is None  # refused before any step
    else:
        method.fit(images, epochs=1)
        assert all(torch.isfinite(p).all() for p in method.encoder.parameters())
