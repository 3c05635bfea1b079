"""Benchmark: stage-1 methods on the same real CIFAR-10 data and budget (issue 2).

Trains one device encoder per method (same seed, data, epochs), then reports kNN
(k=200, tau=0.1) and linear-probe top-1/top-5 on the CIFAR-10 test set, seconds per
training step, the crlsc/dcl step-time ratio, and the SKB's bytes per vector and recall@30
against exact search. Each method's result is written to the JSON as soon as it finishes,
and a re-run skips finished methods (``--fresh`` to redo), so an interrupted run loses
nothing.

    python -m benchmarks.stage1_methods --data-dir ../shared/data --out results/stage1
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from crlsc_fl.data import load_dataset
from crlsc_fl.eval.features import encode_images
from crlsc_fl.eval.knn import knn_accuracy
from crlsc_fl.eval.linear_probe import linear_probe_accuracy
from crlsc_fl.kb import KBConfig, KnowledgeBase, build_text_kb
from crlsc_fl.kb.prompts import make_prompts
from crlsc_fl.methods import build_method, TrainConfig
from crlsc_fl.models.encoders import build_encoder, save_encoder
from crlsc_fl.models.modules.kb_fusion import FusionConfig
from crlsc_fl.models.server_models import build_server_model

# name -> (method, SKB class-name list or None, fusion overrides)
VARIANTS: dict[str, tuple[str, str | None, dict]] = {
    "untrained": ("none", None, {}),
    "dcl": ("dcl", None, {}),
    "nnclr": ("nnclr", None, {}),
    "crlsc-imagenet-text": ("crlsc", "imagenet", {}),
    "crlsc-cifar10-text": ("crlsc", "cifar10", {}),
    # investigation variants (see README): sharper attention, normalised query, less noise
    "crlsc-imagenet-text-tau": ("crlsc", "imagenet", {"scale": "temperature", "query": "normalized"}),
    "crlsc-imagenet-text-lownoise": ("crlsc", "imagenet", {"noise_variance": 0.2 / 384, "query": "normalized", "scale": "temperature"}),
}
DEFAULT_VARIANTS = ["untrained", "dcl", "nnclr", "crlsc-imagenet-text", "crlsc-cifar10-text"]
SKB_TEMPLATES = {"imagenet": "simple", "cifar10": "openai"}


def recall_at(kb: KnowledgeBase, vectors: np.ndarray, queries: np.ndarray, n: int = 30) -> float:
    exact = KnowledgeBase.build(vectors, KBConfig(index_type="flat"))
    _, truth, _ = exact.search(queries, n)
    _, found, _ = kb.search(queries, n)
    return float(np.mean([len(set(a) & set(b)) / n for a, b in zip(truth, found)]))


def interleaved_step_times(
    images: np.ndarray, skb: KnowledgeBase, args: argparse.Namespace, dim: int, steps: int
) -> dict[str, float]:
    """Median seconds per step of ``dcl`` and ``crlsc``, alternating one step of each on the
    same batches, so load from other processes hits both alike (the ratio is the goal)."""
    torch.manual_seed(args.seed)
    methods = {
        name: build_method(name, build_encoder(args.arch, dim=dim, stem=args.stem),
                           TrainConfig(batch_size=args.batch_size, seed=args.seed), kb=skb if name == "crlsc" else None)
        for name in ("dcl", "crlsc")
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    rng = np.random.default_rng(args.seed)
    for step in range(steps + 2):
        batch = images[rng.choice(len(images), args.batch_size, replace=False)]
        for name, method in methods.items():
            seconds = method.fit(batch, 1).step_seconds[0]
            if step >= 2:  # warm-up steps excluded
                times[name].append(seconds)
    medians = {f"{name}_median_step_seconds": float(np.median(t)) for name, t in times.items()}
    medians["ratio_crlsc_over_dcl"] = medians["crlsc_median_step_seconds"] / medians["dcl_median_step_seconds"]
    medians["steps_each"] = steps
    return medians


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="results/stage1")
    parser.add_argument("--train-images", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--stem", default="imagenet")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=sorted(VARIANTS))
    parser.add_argument("--fresh", action="store_true", help="ignore finished results in --out")
    parser.add_argument("--timing-steps", type=int, default=20, help="interleaved dcl/crlsc steps timed for the ratio")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result_path = out / "stage1_benchmark.json"
    report = json.loads(result_path.read_text()) if result_path.exists() and not args.fresh else {}
    report["setup"] = {
        "command": "python -m benchmarks.stage1_methods " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, {platform.processor() or 'cpu'}",
        "torch": torch.__version__,
        **{k: v for k, v in vars(args).items() if k not in ("fresh", "out")},
    }
    report.setdefault("methods", {})
    report.setdefault("skb", {})

    def save() -> None:
        tmp = result_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=2))
        tmp.replace(result_path)

    train = load_dataset("cifar10", "train", args.data_dir)
    test = load_dataset("cifar10", "test", args.data_dir)
    subset = np.sort(np.random.default_rng(args.seed).choice(len(train), args.train_images, replace=False))
    train_images, train_labels = np.asarray(train.images[subset]), torch.from_numpy(train.labels[subset])
    test_images, test_labels = np.asarray(test.images), torch.from_numpy(test.labels)
    num_classes = len(train.class_names)

    server = build_server_model("minilm")
    kb_config = KBConfig(index_type="pq", m=48, nbits=8)
    skbs: dict[str, KnowledgeBase] = {}
    for names, templates in SKB_TEMPLATES.items():
        start = time.perf_counter()
        skbs[names] = build_text_kb(server, names, templates, kb_config)
        exact_vectors = server.encode_text(make_prompts(names, templates))  # unquantised, for recall
        rng = np.random.default_rng(args.seed)
        queries = exact_vectors[rng.choice(len(exact_vectors), min(1000, len(exact_vectors)), replace=False)]
        noisy = queries + rng.normal(0, np.sqrt(0.2 / queries.shape[1]), size=queries.shape).astype(np.float32)
        report["skb"][f"{names}-text"] = {
            "source": skbs[names].metadata.source,
            "count": skbs[names].count,
            "dim": skbs[names].dim,
            "serialized_bytes": skbs[names].nbytes(),
            "bytes_per_vector": skbs[names].bytes_per_vector(),
            "code_bytes_per_vector": skbs[names].code_bytes_per_vector(),
            "float32_bytes_per_vector": 4 * skbs[names].dim,
            "recall@30_self_queries": recall_at(skbs[names], exact_vectors, queries),
            "recall@30_noisy_queries": recall_at(skbs[names], exact_vectors, noisy),
            "build_seconds": time.perf_counter() - start,
        }
        save()

    for variant in args.variants:
        if variant in report["methods"] and not args.fresh:
            print(f"[skip] {variant}: already in {result_path}")
            continue
        method_name, skb_name, fusion = VARIANTS[variant]
        torch.manual_seed(args.seed)
        encoder = build_encoder(args.arch, dim=server.dim, stem=args.stem)
        entry: dict[str, object] = {"method": method_name, "skb": skb_name, "fusion": fusion}
        if method_name != "none":
            options = {"fusion": FusionConfig(**fusion)} if method_name == "crlsc" else {}
            method = build_method(
                method_name, encoder, TrainConfig(batch_size=args.batch_size, seed=args.seed),
                kb=skbs[skb_name] if skb_name else None, **options,
            )
            start = time.perf_counter()
            fit = method.fit(train_images, args.epochs)
            entry.update(
                train_seconds=time.perf_counter() - start, steps=fit.steps, epoch_losses=fit.epoch_losses,
                seconds_per_step=fit.mean_step_seconds,
            )
            save_encoder(encoder, out / f"encoder-{variant}.pt", method=method_name, skb=skb_name)
            if method_name == "crlsc":
                entry["fusion"] = asdict(method.fusion_config)
        train_x = encode_images(encoder, train_images)
        test_x = encode_images(encoder, test_images)
        entry["knn"] = knn_accuracy(train_x, train_labels, test_x, test_labels, num_classes)
        entry["linear"] = linear_probe_accuracy(train_x, train_labels, test_x, test_labels, num_classes)
        report["methods"][variant] = entry
        print(f"[done] {variant}: kNN {entry['knn']} linear {entry['linear']} step {entry.get('seconds_per_step')}")
        save()

    methods = report["methods"]
    if "dcl" in methods and "crlsc-imagenet-text" in methods:
        report["step_time_ratio_crlsc_over_dcl_whole_runs"] = methods["crlsc-imagenet-text"]["seconds_per_step"] / methods["dcl"]["seconds_per_step"]
    if args.timing_steps and "step_timing" not in report:
        report["step_timing"] = interleaved_step_times(train_images, skbs["imagenet"], args, server.dim, args.timing_steps)
        print(f"[timing] {report['step_timing']}")
    save()
    plot(report, out / "stage1_benchmark.png")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["methods"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    x = np.arange(len(names))
    for offset, (metric, label) in zip((-0.2, 0.2), (("knn", "kNN top-1"), ("linear", "linear top-1"))):
        values = [report["methods"][n][metric]["top1"] for n in names]
        bars = axes[0].bar(x + offset, values, width=0.4, label=label)
        axes[0].bar_label(bars, fmt="%.1f", fontsize=7)
    axes[0].set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    axes[0].set_ylabel("CIFAR-10 test accuracy (%)")
    axes[0].legend()
    setup = report["setup"]
    axes[0].set_title(f"{setup['arch']} ({setup['stem']} stem), {setup['train_images']} images, {setup['epochs']} epochs")
    for n in names:
        losses = report["methods"][n].get("epoch_losses")
        if losses:
            axes[1].plot(range(1, len(losses) + 1), losses, marker="o", label=n)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("training loss (DCL)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
