"""Benchmark: does the mentor's knowledge reach the device? Stage-1 methods x KB sources x seeds.

Every run trains one device encoder on the same CIFAR-10 images with the same budget
(images, epochs, batch, augmentations, optimiser) and reports kNN top-1/top-5 (k=200,
tau=0.1, bank = the device's training images) and linear-probe top-1/top-5 on the full
CIFAR-10 test set. Runs are ``method:kb`` pairs:

- methods: ``untrained`` (the initial encoder), ``dcl``, ``nnclr``, ``crlsc`` (paper-literal:
  noise variance 0.2 per dimension, ``q k^T / sqrt(d)``, q* from KB vectors only, no
  anchors) and ``crlsc-grounded`` (anchor alignment + unit query + residual fusion);
- KBs (:mod:`crlsc_fl.kb.mentor`, all PCA'd to ``--dim`` on the server so that every
  encoder is the same): ``none``, ``text-minilm`` (ImageNet class prompts; anchors keyed by
  their label's prompt), ``image-efficientnet-lite2`` (the public split's image features),
  ``random`` (Gaussian unit vectors of the same count and dimension, random anchor keys:
  the control that shows whether the KB's content matters).

The server's public split (``--public-fraction`` of the training set, stratified, as in
the federation) is disjoint from the device's images and from the test set. Each run's
result is written to ``<out>/runs/`` as soon as it finishes; finished runs are skipped on a
re-run, so an interrupted benchmark loses nothing and several processes can share the work
(``--shard i/n``). ``--summarize`` merges the runs into ``stage1_benchmark.json`` (with a
``summary`` list: one row per method and KB, mean and std over seeds) and the figure;
``--timing-steps N`` times the methods' steps interleaved (``step_timing.json``).

    python -m benchmarks.stage1_methods --data-dir ../shared/data --out results/stage1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from crlsc_fl.data import load_dataset, partition_dataset
from crlsc_fl.data.datasets import ImageDataset
from crlsc_fl.eval.features import encode_images
from crlsc_fl.eval.knn import knn_accuracy
from crlsc_fl.eval.linear_probe import linear_probe_accuracy
from crlsc_fl.kb.mentor import MentorConfig, MentorKnowledge, build_mentor_knowledge
from crlsc_fl.methods import TrainConfig, build_method
from crlsc_fl.methods.base import PRECISIONS
from crlsc_fl.methods.grounded import ANCHOR_TARGETS, GroundingConfig, grounded_fusion
from crlsc_fl.models.encoders import LocalEncoder, build_encoder, count_parameters

METHOD_NAMES = ("untrained", "dcl", "nnclr", "crlsc", "crlsc-grounded")
# KB name -> (mentor source, server model); "none" trains without a KB.
KB_SOURCES: dict[str, tuple[str, str] | None] = {
    "none": None,
    "text-minilm": ("text", "minilm"),
    "image-efficientnet-lite2": ("image", "efficientnet-lite2"),
    "random": ("random", "efficientnet-lite2"),
}
DEFAULT_RUNS = [
    "untrained:none", "dcl:none", "nnclr:none",
    "crlsc:text-minilm", "crlsc:image-efficientnet-lite2", "crlsc:random",
    "crlsc-grounded:text-minilm", "crlsc-grounded:image-efficientnet-lite2", "crlsc-grounded:random",
]


def parse_run(text: str) -> tuple[str, str]:
    method, _, kb = text.partition(":")
    if method not in METHOD_NAMES:
        raise argparse.ArgumentTypeError(f"run {text!r}: method {method!r} not in {', '.join(METHOD_NAMES)}")
    if kb not in KB_SOURCES:
        raise argparse.ArgumentTypeError(f"run {text!r}: kb {kb!r} not in {', '.join(KB_SOURCES)}")
    if (method in ("crlsc", "crlsc-grounded")) == (kb == "none"):
        raise argparse.ArgumentTypeError(f"run {text!r}: crlsc methods need a KB, the others take kb 'none'")
    return method, kb


def split_data(args: argparse.Namespace) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    """(public split for the server, the device's training images, the test set)."""
    train = load_dataset("cifar10", "train", args.data_dir, download=False)
    test = load_dataset("cifar10", "test", args.data_dir, download=False)
    part = partition_dataset(train.labels, 1, "iid", public_fraction=args.public_fraction, seed=0)
    private = part.shard(0)
    device_ids = np.sort(np.random.default_rng(0).choice(private, args.train_images, replace=False))
    return train.subset(part.public), train.subset(device_ids), test


def mentor_for(kb: str, seed: int, args: argparse.Namespace, public: ImageDataset) -> MentorKnowledge:
    source, server_model = KB_SOURCES[kb]  # type: ignore[misc]
    config = MentorConfig(source=source, server_model=server_model, dim=args.dim, anchors=args.anchors, m=args.dim // 4)
    return build_mentor_knowledge(config, public, seed=seed)


def evaluate(
    encoder: LocalEncoder, device: ImageDataset, test: ImageDataset, groups: dict[str, list[int]] | None = None
) -> dict[str, dict[str, float]]:
    """kNN (k=200, tau=0.1) and linear top-1/top-5 on ``test`` with ``device`` as the labelled
    bank; ``groups`` adds kNN on the test images of each named list of classes (``knn_<name>``)."""
    train_x, test_x = encode_images(encoder, np.asarray(device.images)), encode_images(encoder, np.asarray(test.images))
    train_y, test_y = torch.from_numpy(device.labels), torch.from_numpy(test.labels)
    classes = len(test.class_names)
    train_q, test_q = (encode_images(encoder, np.asarray(d.images), kind="projection") for d in (device, test))
    result = {
        "knn": knn_accuracy(train_x, train_y, test_x, test_y, classes, k=200, temperature=0.1),
        "linear": linear_probe_accuracy(train_x, train_y, test_x, test_y, classes),
        # kNN on the projection q (the vector that meets the KB), for diagnosis
        "knn_projection": knn_accuracy(train_q, train_y, test_q, test_y, classes, k=200, temperature=0.1),
    }
    for name, members in (groups or {}).items():
        mask = torch.from_numpy(np.isin(test.labels, members))
        result[f"knn_{name}"] = knn_accuracy(train_x, train_y, test_x[mask], test_y[mask], classes, k=200, temperature=0.1)
    return result


def run_one(method: str, kb: str, seed: int, args: argparse.Namespace, data: tuple) -> dict[str, object]:
    public, device, test = data
    torch.manual_seed(seed)
    encoder = build_encoder(args.arch, dim=args.dim, stem=args.stem, width=args.width)
    entry: dict[str, object] = {"method": method, "kb": kb, "seed": seed, "parameters": count_parameters(encoder)}
    if method != "untrained":
        options: dict[str, object] = {}
        mentor = mentor_for(kb, seed, args, public) if kb != "none" else None
        if mentor is not None:
            entry["mentor"] = mentor.report
        if method == "crlsc-grounded":
            assert mentor is not None
            fusion = dataclasses.replace(grounded_fusion(args.dim), **parse_overrides(args.grounded_fusion))
            grounding = GroundingConfig(anchor_batch=args.anchor_batch, align_weight=args.align_weight,
                                        targets=args.targets, target_temperature=args.target_temperature)
            entry["grounding"] = dataclasses.asdict(grounding)
            options = {"anchors": mentor.anchors, "grounding": grounding, "fusion": fusion}
            entry["fusion"] = dataclasses.asdict(fusion)
        trainer = build_method(method, encoder, train_config(args, seed), kb=mentor.skb if mentor else None, **options)
        start = time.perf_counter()
        fit = trainer.fit(np.asarray(device.images), args.epochs, steps=args.steps or None)
        entry.update(train_seconds=time.perf_counter() - start, steps=fit.steps, epoch_losses=fit.epoch_losses,
                     seconds_per_step=fit.mean_step_seconds)
    entry.update(evaluate(encoder, device, test))
    return entry


def train_config(args: argparse.Namespace, seed: int) -> TrainConfig:
    return TrainConfig(batch_size=args.batch_size, lr=args.lr, seed=seed, one_pass=args.one_pass,
                       channels_last=args.channels_last, precision=args.precision)


def parse_overrides(items: list[str]) -> dict[str, object]:
    """``["mode=replace", "top_n=5"]`` -> {"mode": "replace", "top_n": 5} (numbers parsed)."""
    overrides: dict[str, object] = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def interleaved_step_times(args: argparse.Namespace, data: tuple, steps: int) -> dict[str, float]:
    """Median seconds per step of ``dcl``, ``crlsc`` and ``crlsc-grounded`` (image mentor),
    alternating one step of each on the same batches, so that load from other processes
    hits all alike (the ratios are the result)."""
    public, device, _ = data
    mentor = mentor_for("image-efficientnet-lite2", 0, args, public)
    trainers = {}
    for name in ("dcl", "crlsc", "crlsc-grounded"):
        torch.manual_seed(0)
        options = {"anchors": mentor.anchors} if name == "crlsc-grounded" else {}
        trainers[name] = build_method(name, build_encoder(args.arch, dim=args.dim, stem=args.stem, width=args.width),
                                      TrainConfig(batch_size=args.batch_size, seed=0), kb=None if name == "dcl" else mentor.skb, **options)
    times: dict[str, list[float]] = {name: [] for name in trainers}
    rng = np.random.default_rng(0)
    images = np.asarray(device.images)
    for step in range(steps + 2):
        batch = images[rng.choice(len(images), args.batch_size, replace=False)]
        for name, trainer in trainers.items():
            seconds = trainer.fit(batch, 1).step_seconds[0]
            if step >= 2:  # warm-up steps excluded
                times[name].append(seconds)
    medians = {f"{name}_median_step_seconds": float(np.median(t)) for name, t in times.items()}
    for name in ("crlsc", "crlsc-grounded"):
        medians[f"ratio_{name}_over_dcl"] = medians[f"{name}_median_step_seconds"] / medians["dcl_median_step_seconds"]
    return {**medians, "steps_each": steps}


def prepare_out(script: str, args: argparse.Namespace, argv: list[str] | None, skip: tuple[str, ...] = ()) -> tuple[Path, dict]:
    """Set torch threads, create ``<out>/runs``, and describe the run (command, machine, arguments)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    setup = {
        "command": f"python -m benchmarks.{script} " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads per process",
        "torch": torch.__version__,
        **{k: v for k, v in vars(args).items() if k not in ("summarize", "shard", "out", *skip)},
    }
    return out, setup


def seed_statistics(rows: list[dict]) -> dict[str, object]:
    """Mean and sample std over seeds of kNN and linear top-1 (and of per-group kNN, when
    every row has it)."""
    out: dict[str, object] = {"seeds": sorted(r["seed"] for r in rows)}
    groups = sorted(set.intersection(*(set(k for k in r if k.startswith("knn_") and k != "knn_projection") for r in rows)))
    for metric in ("knn", "linear", *groups):
        values = np.array([r[metric]["top1"] for r in rows])
        out[f"{metric}_top1_mean"] = float(values.mean())
        out[f"{metric}_top1_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out


def run_path(out: Path, method: str, kb: str, seed: int) -> Path:
    return out / "runs" / f"{method}__{kb}__seed{seed}.json"


def summarize(out: Path, runs: list[tuple[str, str]]) -> dict[str, object]:
    """Merge finished runs into the report: a ``summary`` row per method and KB."""
    entries = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    summary = []
    for method, kb in runs:
        rows = [e for e in entries if e["method"] == method and e["kb"] == kb]
        if not rows:
            continue
        summary.append({
            "method": method, "kb": kb, **seed_statistics(rows),
            "knn_top5_mean": float(np.mean([r["knn"]["top5"] for r in rows])),
            "seconds_per_step_mean": float(np.mean([r.get("seconds_per_step", 0.0) for r in rows])),
        })
    return {"summary": summary, "runs": entries}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="results/stage1")
    parser.add_argument("--runs", nargs="+", type=parse_run, default=[parse_run(r) for r in DEFAULT_RUNS],
                        help="method:kb pairs; methods " + ", ".join(METHOD_NAMES) + "; kbs " + ", ".join(KB_SOURCES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--train-images", type=int, default=5000)
    parser.add_argument("--public-fraction", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=0, help="train exactly this many steps (0: --epochs epochs)")
    parser.add_argument("--one-pass", action="store_true", help="every view of a step in one forward pass")
    parser.add_argument("--channels-last", action="store_true", help="NHWC encoder and inputs")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32", help="autocast dtype of the forward pass")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--stem", default="imagenet")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--anchors", type=int, default=1000)
    parser.add_argument("--anchor-batch", type=int, default=128)
    parser.add_argument("--align-weight", type=float, default=GroundingConfig.align_weight)
    parser.add_argument("--targets", choices=ANCHOR_TARGETS, default=GroundingConfig.targets)
    parser.add_argument("--target-temperature", type=float, default=GroundingConfig.target_temperature)
    parser.add_argument("--grounded-fusion", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override crlsc-grounded's fusion settings, e.g. mode=replace residual_weight=0")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--shard", default="0/1", help="i/n: this process runs every n-th job starting at i")
    parser.add_argument("--summarize", action="store_true", help="only merge finished runs into the report")
    parser.add_argument("--timing-steps", type=int, default=0,
                        help="only time N interleaved steps of dcl / crlsc / crlsc-grounded (to <out>/step_timing.json)")
    args = parser.parse_args(argv)
    out, setup = prepare_out("stage1_methods", args, argv, skip=("runs",))
    setup["runs"] = [f"{m}:{k}" for m, k in args.runs]
    if args.timing_steps:
        timing = interleaved_step_times(args, split_data(args), args.timing_steps)
        (out / "step_timing.json").write_text(json.dumps({"setup": setup, **timing}, indent=2))
        print(f"[timing] {timing}")
        return
    if not args.summarize:
        index, _, count = args.shard.partition("/")
        jobs = [(m, k, s) for s in args.seeds for m, k in args.runs][int(index) :: int(count)]
        data = split_data(args)
        for method, kb, seed in jobs:
            path = run_path(out, method, kb, seed)
            if path.exists():
                print(f"[skip] {path.name}: done")
                continue
            entry = run_one(method, kb, seed, args, data)
            entry["setup"] = setup
            path.write_text(json.dumps(entry, indent=2))
            print(f"[done] {method}:{kb} seed {seed}: kNN {entry['knn']['top1']:.2f} linear {entry['linear']['top1']:.2f}", flush=True)
    report = {"setup": setup, **summarize(out, args.runs)}
    if args.summarize and report["runs"]:  # describe the runs, not the merging command
        report["setup"] = report["runs"][0]["setup"]
    if (out / "step_timing.json").exists():
        report["step_timing"] = json.loads((out / "step_timing.json").read_text())
    (out / "stage1_benchmark.json").write_text(json.dumps(report, indent=2))
    plot(report, out / "stage1_benchmark.png")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["summary"]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows)), 4.5))
    x = np.arange(len(rows))
    for offset, (metric, label) in zip((-0.2, 0.2), (("knn", "kNN top-1 (k=200)"), ("linear", "linear top-1"))):
        means = [r[f"{metric}_top1_mean"] for r in rows]
        bars = ax.bar(x + offset, means, width=0.4, yerr=[r[f"{metric}_top1_std"] for r in rows], capsize=3, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    ax.set_xticks(x, [f"{r['method']}\n{r['kb']}" for r in rows], fontsize=7)
    ax.set_ylabel("CIFAR-10 test accuracy (%), mean +- std over seeds")
    setup = report["setup"]
    ax.set_title(f"{setup['arch']} x{setup['width']} ({setup['stem']} stem), {setup['train_images']} images, "
                 f"{setup['epochs']} epochs, seeds {setup['seeds']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
