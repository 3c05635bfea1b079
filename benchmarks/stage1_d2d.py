"""Benchmark: device-to-device transfer, against controls of the same size.

Two devices with different architectures and disjoint classes (non-IID), both grounded in the
image mentor's space by the server's anchors:

1. The **peer** (``--peer-arch``) trains ``crlsc-grounded`` on the SKB with its images of
   classes ``--peer-classes`` (once per seed; its encoder is kept in ``<out>``), then
   encodes its knowledge two ways: its **PKB** (the projections of its private images,
   FAISS PQ, as in the paper) and its **anchor-keyed PKB** (its projections of the public
   anchor images, :func:`crlsc_fl.kb.builders.build_anchor_pkb`).
2. The **device** (``--device-arch``) trains on the other classes (or ``--device-classes``,
   which may overlap the peer's; never the same images) with the same anchors and one of:

   - retrieval (eq. 1-2) from ``peer-pkb`` (the peer's PKB), ``random`` (Gaussian unit
     vectors, same count, dimension and index: the control) or ``skb`` (the mentor's SKB),
     fused by ``--device-fusion`` (default residual: q* = q + score v keeps the device's own
     image, as the peer's vectors are all of other classes);
   - alignment (no retrieval KB) to ``peer-anchors`` (the peer's anchor-keyed PKB as
     targets besides the mentor's keys), ``random-anchors`` (random unit keys of the same
     shape: the control) or ``mentor-only`` (the mentor's keys alone: the reference);
   - no mentor at all, the peer as the device's mentor: ``peer-grounded`` (the anchor images
     keyed by the peer's vectors are the device's only grounding: the mentor's knowledge
     reaches it second-hand, through the peer, with the peer's own), ``random-grounded``
     (the same images keyed by random unit vectors: the control) or ``ungrounded`` (plain
     DCL on the device's images).

Every condition uses the same images, steps and augmentations. The device is evaluated on
the full CIFAR-10 test set by kNN (k=200) and a linear probe with one labelled bank for all
runs: ``--bank-images`` IID training images disjoint from the public split (the device's
own images cover only half the classes); kNN is also reported on the test images of the
peer's classes (``knn_peer_classes``: what the device never saw) and of its own. Each
result goes to ``<out>/runs/`` as it finishes; ``--summarize`` writes ``stage1_d2d.json``.

    python -m benchmarks.stage1_d2d --data-dir ../shared/data --out results/stage1-d2d
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.stage1_methods import evaluate, parse_overrides, prepare_out, seed_statistics
from crlsc_fl.data import load_dataset, partition_dataset
from crlsc_fl.kb.anchors import AnchorSet
from crlsc_fl.kb.builders import build_anchor_pkb, build_pkb
from crlsc_fl.kb.knowledge_base import KBConfig, KnowledgeBase
from crlsc_fl.kb.mentor import MentorConfig, build_mentor_knowledge
from crlsc_fl.methods import TrainConfig, build_method
from crlsc_fl.methods.grounded import GroundingConfig, grounded_fusion
from crlsc_fl.models.encoders import build_encoder

RETRIEVAL_CONDITIONS = ("peer-pkb", "random", "skb")
ALIGNMENT_CONDITIONS = ("peer-anchors", "random-anchors", "mentor-only")
# the device holds no mentor keys: a peer's anchor-keyed PKB is its only grounding
PEER_GROUNDED_CONDITIONS = ("peer-grounded", "random-grounded", "ungrounded")
CONDITIONS = RETRIEVAL_CONDITIONS + ALIGNMENT_CONDITIONS + PEER_GROUNDED_CONDITIONS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="results/stage1-d2d")
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(ALIGNMENT_CONDITIONS))
    parser.add_argument("--device-fusion", nargs="*", default=["mode=residual"], metavar="KEY=VALUE",
                        help="the device's fusion settings over crlsc-grounded's (the peer keeps the defaults); "
                             "residual keeps the device's own image in q*, since the peer's PKB holds other classes")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--peer-arch", default="resnet34")
    parser.add_argument("--device-arch", default="resnet18")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--peer-classes", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--device-classes", nargs="+", type=int, default=None,
                        help="the device's classes (default: those the peer does not have)")
    parser.add_argument("--images-per-device", type=int, default=5000)
    parser.add_argument("--bank-images", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--anchors", type=int, default=1000)
    parser.add_argument("--peer-weight", type=float, default=1.0, help="grounding.peer-weight of the anchor conditions")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--shard", default="0/1")
    parser.add_argument("--summarize", action="store_true")
    args = parser.parse_args(argv)
    out, setup = prepare_out("stage1_d2d", args, argv)
    if not args.summarize:
        index, _, count = args.shard.partition("/")
        # shard by seed: the peer (and its PKB) of a seed is trained once, by one process
        jobs = [(seed, c) for seed in args.seeds[int(index) :: int(count)] for c in args.conditions]
        for seed, condition in jobs:
            path = out / "runs" / f"{condition}__seed{seed}.json"
            if path.exists():
                continue
            entry = run_condition(condition, seed, args, out)
            entry["setup"] = setup
            path.write_text(json.dumps(entry, indent=2))
            print(f"[done] {condition} seed {seed}: kNN {entry['knn']['top1']:.2f} linear {entry['linear']['top1']:.2f}", flush=True)
    entries = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    summary = []
    for condition in CONDITIONS:
        rows = [e for e in entries if e["condition"] == condition]
        if rows:
            summary.append({"condition": condition, **seed_statistics(rows)})
    (out / "stage1_d2d.json").write_text(json.dumps({"setup": setup, "summary": summary, "runs": entries}, indent=2))


def run_condition(condition: str, seed: int, args: argparse.Namespace, out: Path) -> dict[str, object]:
    train = load_dataset("cifar10", "train", args.data_dir, download=False)
    test = load_dataset("cifar10", "test", args.data_dir, download=False)
    part = partition_dataset(train.labels, 1, "iid", public_fraction=0.1, seed=0)
    private = np.random.default_rng(0).permutation(part.shard(0))
    peer_mask = np.isin(train.labels[private], args.peer_classes)
    peer_ids = np.sort(private[peer_mask][: args.images_per_device])
    device_classes = args.device_classes or sorted(set(range(len(train.class_names))) - set(args.peer_classes))
    device_mask = np.isin(train.labels[private], device_classes) & ~np.isin(private, peer_ids)
    device_ids = np.sort(private[device_mask][: args.images_per_device])
    # ``private`` is shuffled: keep its order (sorted indices would be the lowest classes, the
    # training set being grouped by class)
    rest = private[~np.isin(private, np.concatenate([peer_ids, device_ids]))]
    bank_ids = np.sort(rest[: args.bank_images])
    public, bank = train.subset(part.public), train.subset(bank_ids)
    config = MentorConfig(source="image", server_model="efficientnet-lite2", dim=args.dim, anchors=args.anchors, m=args.dim // 4)
    mentor = build_mentor_knowledge(config, public, seed=seed)
    grounding = GroundingConfig(peer_weight=args.peer_weight)

    def train_device(arch: str, images: np.ndarray, kb: KnowledgeBase | None, device_seed: int,
                     peer_anchors: tuple[AnchorSet, ...] = (), anchors: AnchorSet | None = mentor.anchors,
                     mentor_keys: bool = True, **fusion: object):  # type: ignore[no-untyped-def]
        torch.manual_seed(device_seed)
        encoder = build_encoder(arch, dim=args.dim, width=args.width)
        method = build_method("crlsc-grounded", encoder, TrainConfig(batch_size=args.batch_size, seed=device_seed),
                              kb=kb, anchors=anchors, grounding=grounding, peer_anchors=peer_anchors, mentor_keys=mentor_keys,
                              fusion=dataclasses.replace(grounded_fusion(args.dim), **fusion))
        start = time.perf_counter()
        method.fit(images, args.epochs)
        return encoder, time.perf_counter() - start

    peer_images = np.asarray(train.images[peer_ids])
    peer = build_encoder(args.peer_arch, dim=args.dim, width=args.width)
    peer_path = out / f"peer-seed{seed}.pt"
    if peer_path.exists():  # the peer is the same for every condition of a seed
        peer.load_state_dict(torch.load(peer_path))
    else:
        peer, _ = train_device(args.peer_arch, peer_images, mentor.skb, 1000 + seed)
        torch.save(peer.state_dict(), peer_path)
    kb: KnowledgeBase | None = None
    peer_anchors: tuple[AnchorSet, ...] = ()
    rng = np.random.default_rng(seed)
    if condition in RETRIEVAL_CONDITIONS:
        pkb = build_pkb(peer, peer_images, KBConfig("pq", m=32, nbits=8), source="peer")
        if condition == "peer-pkb":
            kb = pkb
        elif condition == "skb":
            kb = mentor.skb
        else:
            vectors = rng.standard_normal((pkb.count, args.dim)).astype(np.float32)
            kb = KnowledgeBase.build(vectors, KBConfig("pq", m=32, nbits=8), source="random")
        sent = {"kb_count": kb.count, "kb_bytes": kb.nbytes()}
    elif condition not in ("mentor-only", "ungrounded"):
        peer_anchor_pkb = build_anchor_pkb(peer, mentor.anchors, source="peer")
        if condition.startswith("random"):
            keys = rng.standard_normal(peer_anchor_pkb.keys.shape).astype(np.float32)
            peer_anchor_pkb = mentor.anchors.with_keys(keys / np.linalg.norm(keys, axis=1, keepdims=True), source="random")
        peer_anchors = (peer_anchor_pkb,)
        sent = {"kb_count": len(peer_anchor_pkb), "kb_bytes": len(peer_anchor_pkb.keys_to_bytes())}
    else:
        sent = {"kb_count": 0, "kb_bytes": 0}
    device_anchors: AnchorSet | None = mentor.anchors
    if condition == "ungrounded":
        device_anchors = None
    elif condition in PEER_GROUNDED_CONDITIONS:  # the peer's keys in place of the mentor's (as the federation does)
        sent["kb_bytes"] += len(mentor.anchors.to_bytes())  # the device needs the images as well as the keys
    device_fusion = parse_overrides(args.device_fusion) if kb is not None else {}
    device, seconds = train_device(args.device_arch, np.asarray(train.images[device_ids]), kb, seed, peer_anchors,
                                   device_anchors, condition not in PEER_GROUNDED_CONDITIONS, **device_fusion)
    result = evaluate(device, bank, test, groups={"peer_classes": list(args.peer_classes), "device_classes": device_classes})
    return {"condition": condition, "seed": seed, "device_fusion": device_fusion, **sent, "train_seconds": seconds,
            "peer_weight": args.peer_weight if peer_anchors and condition not in PEER_GROUNDED_CONDITIONS else None,
            "peer_classes": args.peer_classes, "device_classes": device_classes, **result}


if __name__ == "__main__":
    main()
