"""Benchmark: one device training step inside the trainer against a bare torch loop.

For every architecture of a scenario (``[devices]``: arch, width) and for ``crlsc-grounded``
and ``dcl``, with the scenario's ``[train]`` (batch, ``one-pass``, ``channels-last``,
``precision``), ``[grounding]`` (anchor batch) and ``[fusion]`` settings, it times, step for
step and interleaved (so that load from other processes hits both alike):

- **device step**: one step of :meth:`crlsc_fl.methods.base.Stage1Method.fit` on a batch of
  real images: batch gather, **SimCLR augmentation of both views (and of the anchors)**,
  the forward passes, retrieval and fusion (eq. 1-2, grounded with an SKB), the losses,
  backward, Adam and the scheduler;
- **bare step**: the same encoder work on the same tensors, already augmented: the same
  forward passes (same grouping, layout and precision), DCL on (q, p) and, for the grounded
  method, the alignment loss against fixed targets, backward and Adam. Nothing else.

``ratio_device_step_over_bare_step`` is the worst (largest) ratio of median step times over
architectures and methods. ``bare_reference`` times the bare step as it ran before the
levers (float32, NCHW, views in separate passes), so the levers' gain can be read off.
The SKB and anchors are the random control's (same count, dimension and PQ index as the
image mentor's: the step's cost does not depend on the vectors' content). One torch thread,
as each simulated device gets one CPU.

    python -m benchmarks.step_cost --scenario scenarios/main.toml --data-dir ../shared/data \\
        --out results/benchmarks/step_cost.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from crlsc_fl.data import load_dataset
from crlsc_fl.eval.features import images_to_tensor
from crlsc_fl.kb.mentor import MentorKnowledge, build_mentor_knowledge
from crlsc_fl.loss.anchor_alignment_loss import AnchorAlignmentLoss
from crlsc_fl.loss.dcl_loss import DCLLoss
from crlsc_fl.methods import TrainConfig, build_method
from crlsc_fl.methods.base import Stage1Method
from crlsc_fl.models.encoders import build_encoder
from crlsc_fl.scenario.config import ScenarioConfig, load_scenario

METHODS = ("crlsc-grounded", "dcl")


def bare_step(encoder: torch.nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig, passes: list[list[torch.Tensor]],
              loss_of: Callable[[list[torch.Tensor]], torch.Tensor]) -> float:
    """Seconds of one bare step: forward ``passes`` (lists of tensors, one forward pass each,
    or all in one with ``one_pass``), ``loss_of`` the outputs (in the order given), backward, Adam."""
    start = time.perf_counter()
    views = [v for group in passes for v in group]
    groups = [views] if config.one_pass else passes
    outputs: list[torch.Tensor] = []
    for group in groups:
        x = torch.cat(group)
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.precision == "bfloat16"):
            z = encoder(x)
        outputs.extend(z.float().split([len(v) for v in group]))
    loss = loss_of(outputs)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def measure(cfg: ScenarioConfig, arch: str, width: float, method_name: str, mentor: MentorKnowledge, images: np.ndarray,
            config: TrainConfig, steps: int, warmup: int) -> dict[str, float]:
    """Median seconds of a device step and of a bare step, interleaved, for one architecture."""
    batch = config.batch_size
    grounded = method_name == "crlsc-grounded"
    torch.manual_seed(0)
    options: dict[str, object] = {}
    if grounded:
        options = {"anchors": mentor.anchors, "grounding": cfg.grounding, "fusion": cfg.fusion}
    trainer: Stage1Method = build_method(method_name, build_encoder(arch, dim=mentor.skb.dim, stem=cfg.devices.stem, width=width),
                                         config, kb=mentor.skb if grounded else None, **options)
    torch.manual_seed(0)
    bare_encoder = build_encoder(arch, dim=mentor.skb.dim, stem=cfg.devices.stem, width=width)
    if config.channels_last:
        bare_encoder = bare_encoder.to(memory_format=torch.channels_last)
    bare_encoder.train()
    optimizer = torch.optim.Adam(bare_encoder.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    anchor_batch = cfg.grounding.anchor_batch
    align_loss = AnchorAlignmentLoss(cfg.grounding.align_temperature, cfg.grounding.target_temperature)
    align_weight, dcl = cfg.grounding.align_weight, DCLLoss(config.temperature)
    assert mentor.anchors is not None
    keys = torch.from_numpy(mentor.anchors.targets()[0])
    device_times, bare_times, augment_times = [], [], []
    for step in range(warmup + steps):
        picked = images[rng.choice(len(images), batch, replace=False)]
        device_seconds = trainer.fit(picked, epochs=1).step_seconds[0]
        x = images_to_tensor(picked)
        start = time.perf_counter()
        view1, view2 = trainer.augment(x, generator), trainer.augment(x, generator)
        anchors = trainer.augment(images_to_tensor(mentor.anchors.images[rng.choice(len(mentor.anchors), anchor_batch)]), generator)
        augment_seconds = time.perf_counter() - start
        targets = torch.from_numpy(rng.integers(0, len(keys), anchor_batch))
        if grounded:  # the trainer's grouping: queries with anchors, then the other view
            seconds = bare_step(bare_encoder, optimizer, config, [[view1, anchors], [view2]],
                                lambda z, t=targets: dcl(z[0], z[2]) + align_weight * align_loss(z[1], keys, t))
        else:
            seconds = bare_step(bare_encoder, optimizer, config, [[view1], [view2]], lambda z: dcl(z[0], z[1]))
        if step >= warmup:
            device_times.append(device_seconds)
            bare_times.append(seconds)
            augment_times.append(augment_seconds if grounded else augment_seconds * 2 * batch / (2 * batch + anchor_batch))
    device, bare = float(np.median(device_times)), float(np.median(bare_times))
    return {"device_step_seconds": device, "bare_step_seconds": bare, "ratio": device / bare,
            "augment_seconds": float(np.median(augment_times))}


def cpu_model() -> str:
    """The processor's name (Linux: /proc/cpuinfo), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="scenarios/main.toml")
    parser.add_argument("--data-dir", default=None, help="folder with cifar10/ (default: generated images)")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per architecture and method")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", default="results/benchmarks/step_cost.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_scenario(Path(args.scenario))
    if args.data_dir:
        train = load_dataset(cfg.data.dataset, "train", args.data_dir, download=False)
        images = np.asarray(train.images)
        public = train.subset(np.arange(0, len(train), 10))
    else:
        generated = load_dataset("synthetic", "train", None)
        images, public = np.asarray(generated.images), generated
    mentor_config = dataclasses.replace(cfg.kb, source="random")
    mentor = build_mentor_knowledge(mentor_config, public, seed=0)
    config = cfg.train.for_device(0, cfg.scenario.seed, cfg.scenario.rounds)
    reference = dataclasses.replace(config, one_pass=False, channels_last=False, precision="float32")
    rows = []
    for arch, (width, _) in cfg.devices.architecture_mix().items():
        for method in METHODS:
            row = {"arch": arch, "width": width, "method": method,
                   **measure(cfg, arch, width, method, mentor, images, config, args.steps, args.warmup)}
            row["bare_reference_step_seconds"] = measure(cfg, arch, width, method, mentor, images, reference, args.steps // 2,
                                                         args.warmup)["bare_step_seconds"]
            rows.append(row)
            print(f"{arch}@{width} {method}: device {row['device_step_seconds'] * 1e3:.1f} ms, bare {row['bare_step_seconds'] * 1e3:.1f} ms "
                  f"(x{row['ratio']:.2f}; augmentation {row['augment_seconds'] * 1e3:.1f} ms), "
                  f"bare before the levers {row['bare_reference_step_seconds'] * 1e3:.1f} ms", flush=True)
    worst = max(rows, key=lambda r: r["ratio"])
    report = {
        "command": "python -m benchmarks.step_cost " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} cores, 1 torch thread",
        "torch": torch.__version__,
        "scenario": args.scenario,
        "train": {"batch_size": config.batch_size, "one_pass": config.one_pass, "channels_last": config.channels_last,
                  "precision": config.precision, "anchor_batch": cfg.grounding.anchor_batch},
        "augmentation_in_device_step": True,
        "augmentation_in_bare_step": False,
        "ratio_device_step_over_bare_step": worst["ratio"],
        "worst": {"arch": worst["arch"], "method": worst["method"]},
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"worst ratio {worst['ratio']:.2f} ({worst['arch']}, {worst['method']}); written to {out}")


if __name__ == "__main__":
    main()
