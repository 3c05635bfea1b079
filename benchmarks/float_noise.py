"""How far arithmetic alone moves a device's kNN: the yardstick of ``benchmarks/gpu_check.py``.

    CRLSC_DATA_DIR=../shared/data python -m benchmarks.float_noise scenarios/main.toml --devices 0-7 \\
        [--perturbation 1e-6] [--out results/benchmarks/float_noise.json]

A CUDA run and a CPU run of a scenario draw the same random numbers and differ only in
rounding. This measures what such a difference does, on the CPU: every listed device runs its
rounds (``scenario.rounds`` of the scenario's ``[train]`` budget, state kept between rounds as
in a run) twice, once as the scenario says and once with every initial weight multiplied by
``1 + perturbation`` (1e-6: a few float32 ulps, far less than TF32's rounding on a GPU), in two
topologies' ways: ``local`` (``dcl``, no knowledge) and ``cloud-edge`` (``train.kb-method``
with the mentor's SKB and anchors). It reports, per topology, each device's final kNN top-1
in both runs and their differences (mean, population std, largest), one torch thread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from crlsc_fl.device import device_round
from crlsc_fl.device.device_round import RoundTask, run_device_round
from crlsc_fl.device.device_store import DeviceStore
from crlsc_fl.kb.mentor import build_mentor_knowledge
from crlsc_fl.methods import METHODS, Need
from crlsc_fl.scenario.config import ScenarioConfig, load_scenario
from crlsc_fl.scenario.devices import federated_data


@contextmanager
def perturbed_initial_weights(relative: float) -> Iterator[None]:
    """Within the block, every device encoder starts from its seeded weights times ``1 + relative``."""
    build = device_round.build_encoder

    def build_perturbed(*args: Any, **kwargs: Any) -> Any:
        encoder = build(*args, **kwargs)
        with torch.no_grad():
            for parameter in encoder.parameters():
                parameter.mul_(1 + relative)
        return encoder

    device_round.build_encoder = build_perturbed  # type: ignore[assignment]
    try:
        yield
    finally:
        device_round.build_encoder = build  # type: ignore[assignment]


def final_knn(cfg: ScenarioConfig, device: int, root: Path, blobs: dict[str, bytes], dim: int) -> dict[str, float]:
    """{topology: kNN top-1 after the last round} of one device, both topologies."""
    out = {}
    mentored = {"kb_keys": ("skb",), **({"anchor_key": "anchors"} if Need.ANCHORS in METHODS.get(cfg.train.kb_method).uses() else {})}
    for topology, method, keys in [("local", "dcl", {}), ("cloud-edge", cfg.train.kb_method, mentored)]:
        store = DeviceStore(root, "float-noise", topology, device)
        for server_round in range(1, cfg.scenario.rounds + 1):
            task = RoundTask(topology, server_round, method, dim, **keys)  # type: ignore[arg-type]
            outcome = run_device_round(cfg, device, task, store, blobs if server_round == 1 else {})
        out[topology] = outcome.metrics["knn_top1"]
    return out


def measure(cfg: ScenarioConfig, devices: Sequence[int], perturbation: float) -> dict[str, Any]:
    public = federated_data(cfg.data, cfg.devices.num_devices, cfg.scenario.seed).public_split()
    knowledge = build_mentor_knowledge(cfg.kb, public, seed=cfg.scenario.seed)
    if knowledge.anchors is None:
        raise ValueError("the scenario's mentor has no anchors (kb.anchors = 0): the cloud-edge run needs them")
    blobs = {"skb": knowledge.skb.to_bytes(), "anchors": knowledge.anchors.to_bytes()}
    rows = []
    with tempfile.TemporaryDirectory(prefix="crlsc-float-noise-") as tmp:
        for device in devices:
            exact = final_knn(cfg, device, Path(tmp) / "exact", blobs, knowledge.skb.dim)
            with perturbed_initial_weights(perturbation):
                moved = final_knn(cfg, device, Path(tmp) / "perturbed", blobs, knowledge.skb.dim)
            rows.append({"device": device, "exact": exact, "perturbed": moved})
            print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for topology in ("local", "cloud-edge"):
        differences = [r["perturbed"][topology] - r["exact"][topology] for r in rows]
        summary[topology] = {"n": len(differences), "mean_difference": statistics.fmean(differences),
                             "std_difference": statistics.pstdev(differences),
                             "max_abs_difference": max(abs(d) for d in differences)}
    return {"perturbation": perturbation, "devices": rows, "topologies": summary}


def device_list(text: str) -> list[int]:
    """``"0-3,7"`` -> [0, 1, 2, 3, 7]."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, _, high = part.partition("-")
        out += list(range(int(low), int(high or low) + 1))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.float_noise", description=__doc__.split("\n")[0])
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--devices", type=device_list, default=device_list("0-7"), help="e.g. 0-7 (default)")
    parser.add_argument("--perturbation", type=float, default=1e-6, help="relative change of the initial weights (default %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="scenario overrides")
    parser.add_argument("--out", type=Path, default=None, help="write the report (JSON) here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as each simulated device gets one CPU
    from crlsc_fl.launcher.overrides import merged_run_config, parse_overrides

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_scenario(merged_run_config(args.scenario, parse_overrides(args.overrides), Path(tmp) / "s.toml"))
    report = {"scenario": str(args.scenario), "overrides": args.overrides, **measure(cfg, args.devices, args.perturbation)}
    for topology, row in report["topologies"].items():
        print(f"{topology}: {row['n']} devices, kNN top-1 moved by {row['mean_difference']:+.2f} on average "
              f"(std {row['std_difference']:.2f}, largest {row['max_abs_difference']:.1f} points)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
