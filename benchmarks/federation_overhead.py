"""Benchmark: Flower simulation overhead and peak memory (issue 3).

1. Runs a scenario's topology (default: ``local`` of ``scenarios/quick.toml``, 100 devices)
   through the real launcher (Flower simulation, 2 actors of 1 CPU each), sampling memory
   every second with :class:`crlsc_fl.memory.MemorySampler`: the peak of system-wide use
   above the idle baseline, and the peak summed PSS of the launcher's process tree.
2. Runs the same devices' same rounds in a bare PyTorch loop in this process (the same
   :func:`crlsc_fl.device.device_round.run_device_round`, 2 torch threads).
3. Reports per-round wall time of both and the ratio simulation / bare loop.

    python -m benchmarks.federation_overhead --scenario scenarios/quick.toml --topology local \\
        --out results/benchmarks/federation_overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from crlsc_fl import launch
from crlsc_fl.device.device_round import RoundTask, run_device_round
from crlsc_fl.device.device_store import DeviceStore
from crlsc_fl.memory import MemorySampler, physical_memory
from crlsc_fl.outputs.results import read_metrics
from crlsc_fl.scenario.config import load_scenario


def bare_loop(scenario: Path, topology: str, rounds: list[dict]) -> dict[str, object]:
    """The same device work as the simulated ``topology`` rounds, one device after the other."""
    cfg = load_scenario(scenario)
    torch.set_num_threads(2)
    state_root = Path(tempfile.mkdtemp(prefix="crlsc-bare-"))
    dim = cfg.kb.known_dim() or 512  # open_clip ViT-B-32 when the dimension is not set
    bare_rounds = []
    for server_round in range(1, cfg.scenario.rounds + 1):
        round_start = time.time()
        for device in range(cfg.devices.num_devices):
            store = DeviceStore(state_root, "bare", topology, device)
            run_device_round(cfg, device, RoundTask(topology, server_round, "dcl", dim), store)
        bare_rounds.append(time.time() - round_start)
        print(f"bare loop round {server_round}: {bare_rounds[-1]:.1f} s", flush=True)
    sim_rounds = [r["wall_seconds"] for r in rounds if r["label"].endswith(f"/{topology}")]
    return {
        "timed_topology": topology,
        "devices": cfg.devices.num_devices,
        "simulated_round_seconds_of_timed_topology": sim_rounds,
        "bare_loop_round_seconds": bare_rounds,
        "ratio_per_round": [s / b for s, b in zip(sim_rounds, bare_rounds)],
        "ratio_mean": sum(sim_rounds) / sum(bare_rounds),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", type=Path, default=Path("scenarios/quick.toml"))
    parser.add_argument("--topology", default="local", help="topology timed against the bare loop")
    parser.add_argument("--topologies", default=None, help="simulate only these (default: the scenario's)")
    parser.add_argument("--results-dir", type=Path, default=None, help="where the simulated run is kept (default: a temp dir)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="scenario override")
    parser.add_argument("--no-bare-loop", action="store_true", help="only the simulation and its memory")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/federation_overhead.json"))
    args = parser.parse_args(argv)

    results_dir = (args.results_dir or Path(tempfile.mkdtemp(prefix="crlsc-overhead-"))).resolve()
    overrides = ["--set", f"scenario.results-dir={results_dir}"]
    if args.topologies:
        overrides += ["--set", f"scenario.topologies={args.topologies}"]
    for item in args.overrides:
        overrides += ["--set", item]
    start = time.time()
    with MemorySampler(interval=1.0, keep_series=True) as sampler:  # this process is the launcher
        code = launch.main([str(args.scenario), *overrides])
    sim_total = time.time() - start
    if code != 0:
        raise SystemExit(f"simulation failed with exit code {code}")
    run_dir = max((p for p in results_dir.glob("*/*") if (p / "rounds.jsonl").exists()), key=lambda p: p.stat().st_mtime)
    rounds = read_metrics(run_dir, "rounds.jsonl")
    report: dict[str, object] = {
        "command": "python -m benchmarks.federation_overhead " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {round(physical_memory() / 2**30)} GiB",
        "scenario": str(args.scenario),
        "overrides": overrides,
        "run_dir": str(run_dir),
        "simulation_total_seconds_incl_startup": sim_total,
        "simulation_round_seconds": {f"{r['label']}#{r['round']}": r["wall_seconds"] for r in rounds},
        # Page cache of the device state being written counts in the system delta; PSS
        # splits shared pages (Ray's object store) among the processes mapping them.
        "peak_memory_gib_system_delta": sampler.peak_system / 2**30,
        "peak_memory_gib_process_tree_pss": sampler.peak_tree / 2**30,
        "memory_series_seconds_system_gib_pss_gib": sampler.series[::5],
    }
    if not args.no_bare_loop:
        report.update(bare_loop(args.scenario, args.topology, rounds))
        args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
