"""One device's work in one round, free of Flower so a bare loop can run it too.

Load the device's state, train locally with the task's method, built from what the task
carries (the KBs it was given, the anchors, peers' anchor keys), checked against what the
method declares it needs (:mod:`crlsc_fl.methods.needs`), or starting from averaged weights
for the ``fedavg`` baseline; evaluate with kNN on frozen features (:func:`evaluate_encoder`),
optionally build its PKB, save the state.
The ClientApp (:mod:`crlsc_fl.flower.client`) wraps this in Flower messages; ``benchmarks/federation_overhead.py`` calls
it in a plain loop.

The round computes on ``devices.accelerator`` (:mod:`crlsc_fl.accelerator`). The encoder is
always initialised on the CPU (the same seeded weights on any device) and then moved; its
stored state and the weights it returns are CPU tensors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from crlsc_fl.accelerator import resolve_device
from crlsc_fl.device.device_store import DeviceStore
from crlsc_fl.device.placement import placement
from crlsc_fl.eval.features import encode_images
from crlsc_fl.eval.knn import knn_accuracy
from crlsc_fl.kb.anchors import AnchorSet
from crlsc_fl.kb.builders import build_anchor_pkb, build_pkb
from crlsc_fl.kb.union import KnowledgeBaseUnion
from crlsc_fl.methods import METHODS, MethodInputs, Need
from crlsc_fl.models.encoders import LocalEncoder, build_encoder, count_flops, count_parameters
from crlsc_fl.scenario.config import ScenarioConfig
from crlsc_fl.scenario.devices import federated_data, plan_devices


@dataclass(frozen=True)
class RoundTask:
    """What the server asks of one device in one round."""

    topology: str
    server_round: int
    method: str
    dim: int
    kb_keys: tuple[str, ...] = ()
    return_pkb: bool = False
    return_weights: bool = False
    run_key: str = ""  # state directory name of the run ("" = the Flower run id)
    state_round: int | None = None  # start from the state saved after this round (0: fresh; None: latest)
    anchor_key: str = ""  # the anchor set of a method that uses anchors ("" = none)
    peer_anchor_keys: tuple[str, ...] = ()  # peers' anchor-keyed PKBs: the device's targets instead of the mentor's keys


@dataclass
class RoundOutcome:
    """What a device reports after a round: its metrics, where it ran (``node``, ``host``:
    :func:`~crlsc_fl.device.placement.placement`), and its PKB / weights when asked."""

    metrics: dict[str, float]
    pkb: bytes | None = None
    weights: dict[str, torch.Tensor] | None = None
    placement: dict[str, str] = field(default_factory=dict)


@lru_cache(maxsize=8)
def encoder_flops(arch: str, dim: int, stem: str, width: float) -> int:
    """FLOPs of one forward pass of one 32x32 image (counted once per encoder kind and process)."""
    return count_flops(build_encoder(arch, dim=dim, stem=stem, width=width))


def evaluate_encoder(cfg: ScenarioConfig, encoder: LocalEncoder, device: int) -> dict[str, float]:
    """kNN top-1/top-5 of the device's encoder on the scenario's test subset (the same
    seeded ``data.test-samples`` images for every device), with the device's **whole
    labelled shard** as the bank (not only the ``data.samples-per-device`` images it
    trains on). Both are encoded once, in batches, without gradients."""
    data = federated_data(cfg.data, cfg.devices.num_devices, cfg.scenario.seed)
    bank_images, bank_labels = data.device_images(device)
    return knn_accuracy(
        encode_images(encoder, bank_images), torch.from_numpy(bank_labels),
        encode_images(encoder, np.asarray(data.test.images)), torch.from_numpy(np.asarray(data.test.labels)),
        len(data.train.class_names), k=cfg.eval.knn_k, temperature=cfg.eval.knn_temperature,
    )


def anchor_keyed_pkb(cfg: ScenarioConfig, encoder: LocalEncoder, anchors: AnchorSet, device: int, server_round: int) -> AnchorSet:
    """What the device tells its peers under ``topology.peer-knowledge``: its view of the
    anchors (``anchor-pkb``), or unit Gaussian keys of the same shape, seeded by scenario,
    device and round (``random-anchor-pkb``: the control that sends the same bytes without
    the device's knowledge)."""
    source = f"device-{device}"
    if cfg.topology.peer_knowledge == "anchor-pkb":
        return build_anchor_pkb(encoder, anchors, source=source)
    keys = np.random.default_rng([cfg.scenario.seed, device, server_round]).standard_normal(anchors.keys.shape)
    return anchors.with_keys((keys / np.linalg.norm(keys, axis=1, keepdims=True)).astype(np.float32), source=f"random:{source}")


def run_device_round(
    cfg: ScenarioConfig,
    device: int,
    task: RoundTask,
    store: DeviceStore,
    incoming_kbs: dict[str, bytes] | None = None,
    weights: dict[str, torch.Tensor] | None = None,
) -> RoundOutcome:
    start = time.perf_counter()
    spec = plan_devices(cfg.devices, cfg.scenario.seed)[device]
    data = federated_data(cfg.data, cfg.devices.num_devices, cfg.scenario.seed)
    images, _ = data.device_images(device, cfg.data.samples_per_device)
    incoming_kbs = incoming_kbs or {}

    train = cfg.train.for_device(device, cfg.scenario.seed, cfg.scenario.rounds)
    accelerator = resolve_device(cfg.devices.accelerator)
    torch.manual_seed(train.seed)  # the same initial weights in any process, also on resume
    encoder = build_encoder(spec.arch, dim=task.dim, stem=cfg.devices.stem, width=spec.width)  # on the CPU
    kbs = [store.knowledge_base(key, incoming_kbs.get(key), dim=task.dim) for key in task.kb_keys]
    kb = None if not kbs else (kbs[0] if len(kbs) == 1 else KnowledgeBaseUnion(kbs))
    anchors = store.anchor_set(task.anchor_key, incoming_kbs.get(task.anchor_key), dim=task.dim) if task.anchor_key else None
    peer_keys: tuple[AnchorSet, ...] = ()
    if task.peer_anchor_keys:  # topology.peer-knowledge = anchor-pkb: the peers' views of the anchors
        if anchors is None:
            raise ValueError(f"device {device}: peers' anchor-keyed PKBs arrived without the anchor set they key")
        peer_keys = tuple(store.peer_anchor_keys(key, incoming_kbs.get(key), anchors) for key in task.peer_anchor_keys)
    # the method says what it trains with; Stage1Method.build refuses what it needs and did not get
    method_class = METHODS.get(task.method)
    inputs = MethodInputs(kb, anchors, cfg.fusion if Need.FUSION in method_class.uses() else None, peer_keys)
    settings = cfg.tables()[method_class.settings_table] if method_class.settings_table else None
    method = method_class.build(encoder, train, inputs, settings, device=accelerator)
    batch = min(cfg.train.batch_size, len(images))
    previous = store.load_training(task.state_round)
    if previous is not None:
        method.load_training_state(previous, len(images) // batch, cfg.train.round_steps(len(images)))
    if weights is not None:  # fedavg: start from the group average, keep the local optimizer
        encoder.load_state_dict(weights)

    fit = method.fit(images, steps=cfg.train.round_steps(len(images)))
    train_seconds = time.perf_counter() - start

    eval_start = time.perf_counter()
    knn = evaluate_encoder(cfg, encoder, device)
    eval_seconds = time.perf_counter() - eval_start

    pkb_blob = None
    if task.return_pkb and cfg.topology.peer_knowledge != "pkb":
        if anchors is None:
            raise ValueError(f"device {device}: topology.peer-knowledge={cfg.topology.peer_knowledge!r} needs the anchor set")
        pkb_blob = anchor_keyed_pkb(cfg, encoder, anchors, device, task.server_round).keys_to_bytes()
    elif task.return_pkb:
        pkb_images = images[: cfg.pkb.samples] if cfg.pkb.samples else images
        pkb = build_pkb(encoder, pkb_images, cfg.pkb.for_shard(task.dim, len(pkb_images)), source=f"device-{device}", round=task.server_round)
        pkb_blob = pkb.to_bytes()

    store.save(method, topology=task.topology, device=device, round=task.server_round)
    images_trained = fit.steps * batch
    metrics = {
        "loss": fit.epoch_losses[-1] if fit.epoch_losses else float("nan"),
        "knn_top1": knn["top1"],
        "knn_top5": knn["top5"],
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "steps": float(fit.steps),
        "images_trained": float(images_trained),
        # two augmented views per image pass through the encoder
        "sim_compute_seconds": 2 * images_trained / spec.images_per_second,
        "kb_vectors": float(kb.count if kb is not None else 0),
        "parameters": float(count_parameters(encoder)),
        "flops_per_image": float(encoder_flops(spec.arch, task.dim, cfg.devices.stem, spec.width)),
        "pkb_bytes": float(len(pkb_blob) if pkb_blob else 0),
        "num_examples": float(len(images)),
        # the whole round on the device (state, training, evaluation, PKB, save): the run's CPU use
        "device_seconds": time.perf_counter() - start,
    }
    weights_out = {name: tensor.cpu() for name, tensor in encoder.state_dict().items()} if task.return_weights else None
    return RoundOutcome(metrics, pkb_blob, weights_out, placement())
