"""Benchmark: what a device's PKB gives away about its private images, to whoever holds the
device's encoder (or a model mapping into the same space) and labelled public images.

A PKB (``crlsc_fl.kb.builders.build_pkb``) is a FAISS PQ index of the device encoder's
projections of its private images, in shard order, with the PQ codebook trained on them.
For 500 "private" CIFAR-10 training images (the shard) and 500 others of the same
distribution, with the scenario default ``[pkb]`` index (``PKBConfig().for_shard``), this
measures:

- **fidelity**: cosine between each exact embedding and its PQ reconstruction;
- **membership** (the attacker embeds a candidate image and looks for a PKB vector close to
  it): ROC AUC of the best inner product with the decoded PKB, members against non-members,
  and the members found at a threshold that flags 1% of the non-members;
- **class of each private image**: 20-NN vote among 2,000 labelled public images embedded by
  the same encoder, from the decoded PKB vector (and, for reference, from the exact one).

Encoders: a randomly initialised ResNet-18 x 0.25 (a device before training),
EfficientNet-Lite2 ImageNet features reduced by PCA to 384 dimensions (a stand-in for a
well-trained encoder), and any device encoder a run kept (``--encoder``: the
``encoder.pt`` of a ``scenario.keep-devices`` device, e.g. under
``~/.cache/crlsc_fl/device-state/<run id>/<topology>/device-<id>/``).

    python -m benchmarks.pkb_leakage --data-dir ../shared/data [--encoder PATH ...] [--out results/benchmarks/pkb_leakage.json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from crlsc_fl.data.datasets import load_dataset
from crlsc_fl.eval.features import encode_images
from crlsc_fl.kb.builders import PKBConfig
from crlsc_fl.kb.knowledge_base import KnowledgeBase
from crlsc_fl.models.encoders import build_encoder, load_encoder

SHARD, PUBLIC, NEIGHBOURS, DIM = 500, 2000, 20, 384


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a member scores above a non-member), ties count half."""
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def knn_labels(queries: np.ndarray, bank: np.ndarray, labels: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    top = np.argsort(-(queries @ bank.T), axis=1)[:, :k]
    return np.array([np.bincount(v, minlength=int(labels.max()) + 1).argmax() for v in labels[top]])


def measure(embed: Callable[[np.ndarray], np.ndarray], images: np.ndarray, labels: np.ndarray,
            split: dict[str, np.ndarray], pkb: PKBConfig) -> dict[str, float]:
    private, others, public = (unit(embed(images[split[k]])) for k in ("members", "non_members", "public"))
    config = pkb.for_shard(private.shape[1], len(private))
    index = KnowledgeBase.build(private.astype(np.float32), config, source="pkb:benchmark", modality="image", model="benchmark")
    decoded = index.decoded_vectors()
    cosine = (unit(decoded) * private).sum(1)
    member_best, other_best = (private @ decoded.T).max(1), (others @ decoded.T).max(1)
    threshold = np.quantile(other_best, 0.99)
    truth = labels[split["members"]]
    return {
        "pkb_bytes": len(index.to_bytes()), "pq_m": config.m, "pq_nbits": config.nbits,
        "cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min()),
        "membership_auc": auc(member_best, other_best), "membership_tpr_at_1pct_fpr": float((member_best > threshold).mean()),
        "class_accuracy_from_pkb": float((knn_labels(unit(decoded), public, labels[split["public"]]) == truth).mean()),
        "class_accuracy_from_exact": float((knn_labels(private, public, labels[split["public"]]) == truth).mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pkb_leakage", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None, help="holds cifar10/ (default: $CRLSC_DATA_DIR)")
    parser.add_argument("--encoder", type=Path, action="append", default=[],
                        help="a trained device's encoder.pt (repeatable); labelled <topology>/<device> from its path")
    parser.add_argument("--pkb-m", type=int, default=PKBConfig().m,
                        help="[pkb] m for the --encoder devices: that of the run they come from (default: the scenario default)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.encoder if not p.is_file()]
    if missing:
        parser.error(f"--encoder: no such file: {', '.join(missing)}")
    torch.set_num_threads(2)
    data = load_dataset("cifar10", "train", data_dir=args.data_dir, download=False)
    order = np.random.default_rng(0).permutation(len(data.images))
    split = {"members": order[:SHARD], "non_members": order[SHARD:2 * SHARD], "public": order[2 * SHARD:2 * SHARD + PUBLIC]}
    start = 2 * SHARD + PUBLIC
    pca_fit = order[start:start + 1000]  # 1,000 further images, for the PCA only

    torch.manual_seed(0)
    resnet = build_encoder("resnet18", dim=DIM, width=0.25)

    def resnet_embed(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return encode_images(resnet, images, kind="projection").numpy()

    from crlsc_fl.models.server_models import EfficientNetLiteEncoder

    mentor = EfficientNetLiteEncoder(image_size=128)
    fit = unit(mentor.encode_images(data.images[pca_fit]))
    mean = fit.mean(0)
    projection = np.linalg.svd(fit - mean, full_matrices=False)[2][:DIM].T

    def trained_embed(images: np.ndarray) -> np.ndarray:
        return (unit(mentor.encode_images(images)) - mean) @ projection

    def device_embed(path: Path) -> Callable[[np.ndarray], np.ndarray]:
        encoder = load_encoder(path)

        def embed(images: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return encode_images(encoder, images, kind="projection").numpy()

        return embed

    devices_pkb = PKBConfig(m=args.pkb_m)
    encoders: list[tuple[str, Callable[[np.ndarray], np.ndarray], PKBConfig]] = [
        ("resnet18x0.25-untrained", resnet_embed, PKBConfig()), ("efficientnet-lite2-pca384", trained_embed, PKBConfig()),
        *((f"{p.parent.parent.name}/{p.parent.name}", device_embed(p), devices_pkb) for p in args.encoder),
    ]
    results = {}
    for name, embed, pkb in encoders:
        t0 = time.time()
        results[name] = measure(embed, data.images, data.labels, split, pkb)
        print(name, json.dumps({k: round(v, 4) for k, v in results[name].items()}), f"({time.time() - t0:.0f} s)", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
