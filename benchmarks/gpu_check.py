"""GPU check: the main job on CUDA, timed, against a finished CPU run of the same scenario.

    CRLSC_DATA_DIR=../shared/data python -m benchmarks.gpu_check [SCENARIO] --cpu-results RESULTS_DIR \\
        [--tolerance 1.5] [--results-root results/gpu-check] [--out results/benchmarks/gpu_check.json] \\
        [--set KEY=VALUE ...] [--timeout SECONDS]

``SCENARIO`` defaults to ``scenarios/main.toml``; ``RESULTS_DIR`` is a completed CPU run of
it (``results/main/<run id>``). On a machine where torch sees a CUDA GPU the script

1. checks that ``RESULTS_DIR`` is a completed run of the same scenario (its ``config.json``
   holds the same value for every key except the machine's: ``devices.accelerator``,
   ``devices.gpus-per-device``, ``data.data-dir``, ``scenario.results-dir``, ``scenario.resume``),
   before any GPU time is spent;
2. runs ``python -m crlsc_fl.launch SCENARIO --set devices.accelerator="cuda"`` (plus the
   ``--set`` given here, with the results under ``--results-root``) and times it;
3. compares, per topology, the mean kNN top-1 over devices after the last round
   (``summary.json``: ``topologies.<t>.knn_top1.mean``) with the CPU run's; it passes when
   every topology of both runs is within ``--tolerance`` percentage points.

It writes ``--out`` (JSON): the GPU (name, torch, CUDA), both runs' wall time (the GPU run's
as timed here and both runs' ``elapsed_seconds`` from their summaries, which count the same
span: the ServerApp's), and per topology both means, their difference, and the per-device
differences (paired by device, from ``metrics.jsonl``: mean, std, largest), which show how far
single encoders moved.

Why a tolerance, and why 1.5 points. Both runs draw the same random numbers (initial weights
on the CPU, batch order, augmentation parameters, anchors, retrieval noise: all from CPU
generators seeded by scenario, device and round), so they differ only in arithmetic: cuDNN
picks other convolution algorithms and by default runs float32 convolutions in TF32 (10-bit
mantissa), GPU reductions (BatchNorm statistics, matrix products, losses) sum in other orders,
bfloat16 autocast rounds other intermediates, and bicubic resizing of the mentor's images
differs in the last bits. Training is chaotic: such differences grow over hundreds of steps,
and a retrieval near a tie returns other neighbours, so after the main job's 300 steps each
encoder is another draw of the same training. ``benchmarks/float_noise.py`` measured that on
a CPU with nothing but the initial weights times 1 + 1e-6 (less than TF32's rounding): over 8
devices of the main job, single devices' final kNN top-1 moved with a std of 1.76 points
(``local``) and 1.44 (``cloud-edge``), by up to 4.5 (``results/benchmarks/float_noise.json``).
A topology's mean over 100 devices averages that out: it moves by about that std / 10, i.e.
0.15-0.2 points. 1.5 points is about 8 times that, and below the gaps the README's
conclusions rest on, so a mean outside it means the CUDA path computes something else (a
bug), not other rounding. With fewer devices (``--set devices.num-devices=...``) the mean
moves more (std / sqrt(devices)); ``per_device`` in the JSON shows how far single devices moved.

Exit codes: 0 every topology within the tolerance; 1 a topology outside it, or the GPU run
did not complete; 2 bad arguments (missing scenario, CPU results not of this scenario); 3 no
CUDA GPU (torch.cuda.is_available() is False): nothing is run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_SCENARIO = Path("scenarios/main.toml")
DEFAULT_TOLERANCE = 1.5  # kNN top-1 percentage points per topology mean (module docstring)
# keys that describe the machine or where files go, not the method: they may differ between the runs
MACHINE_KEYS = ("devices.accelerator", "devices.gpus-per-device", "data.data-dir", "scenario.results-dir", "scenario.resume")
NO_GPU, BAD_ARGUMENTS, FAILED, PASSED = 3, 2, 1, 0


class CheckError(ValueError):
    """A problem with the arguments, found before anything runs (exit 2)."""


def gpu_description() -> dict[str, Any] | None:
    """The visible CUDA GPU, or None where torch sees none."""
    import torch

    if not torch.cuda.is_available():
        return None
    return {"name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "bf16": torch.cuda.is_bf16_supported()}


def no_gpu_message() -> str:
    from crlsc_fl.accelerator import cuda_unavailable_reason

    return f"no CUDA GPU: {cuda_unavailable_reason()}. Run this check on a machine with a GPU."


def scenario_values(scenario: Path, overrides: Sequence[str]) -> dict[str, Any]:
    """The scenario's keys (defaults filled in) with the overrides, as the launcher would run it."""
    from crlsc_fl.launcher.overrides import merged_run_config, parse_overrides
    from crlsc_fl.scenario.config import load_scenario

    if not scenario.is_file():
        raise CheckError(f"scenario {scenario} not found (the main job's is {DEFAULT_SCENARIO}); give the scenario file")
    values = parse_overrides(overrides)
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"gpu-check-{os.getpid()}.toml"
    try:
        return load_scenario(merged_run_config(scenario, values, tmp)).to_flat()
    finally:
        tmp.unlink(missing_ok=True)


def completed_run(results: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config.json's scenario values, summary.json) of a completed run directory."""
    config_file, summary_file = results / "config.json", results / "summary.json"
    if not config_file.is_file() or not summary_file.is_file():
        raise CheckError(f"{results} is not a run directory (config.json and summary.json expected)")
    summary = json.loads(summary_file.read_text())
    if summary.get("status") != "completed":
        raise CheckError(f"{results}: status {summary.get('status')!r}, not 'completed'")
    return json.loads(config_file.read_text())["scenario"], summary


def differing_keys(expected: dict[str, Any], recorded: dict[str, Any]) -> list[str]:
    """Scenario keys whose values differ (keys one run lacks count as defaults), machine keys left out."""
    keys = (set(expected) | set(recorded)) - set(MACHINE_KEYS)
    return sorted(k for k in keys if k in expected and k in recorded and expected[k] != recorded[k])


def last_round_knn(results: Path) -> dict[str, dict[int, float]]:
    """{topology: {device: kNN top-1 after the topology's last round}} from ``metrics.jsonl``."""
    rows = [json.loads(line) for line in (results / "metrics.jsonl").read_text().splitlines() if line.strip()]
    out: dict[str, dict[int, float]] = {}
    for topology in sorted({r["topology"] for r in rows}):
        mine = [r for r in rows if r["topology"] == topology and "knn_top1" in r]
        if mine:
            last = max(r["round"] for r in mine)
            out[topology] = {int(r["device"]): float(r["knn_top1"]) for r in mine if r["round"] == last}
    return out


def compare(cpu: Path, gpu: Path, tolerance: float) -> tuple[bool, dict[str, Any]]:
    """(passed, per-topology report) of two completed runs' mean kNN top-1."""
    cpu_summary = json.loads((cpu / "summary.json").read_text())["topologies"]
    gpu_summary = json.loads((gpu / "summary.json").read_text())["topologies"]
    cpu_devices, gpu_devices = last_round_knn(cpu), last_round_knn(gpu)
    report: dict[str, Any] = {}
    passed = True
    for topology in sorted(set(cpu_summary) | set(gpu_summary)):
        if topology not in cpu_summary or topology not in gpu_summary:
            report[topology] = {"ok": False, "reason": f"only in the {'CPU' if topology in cpu_summary else 'GPU'} run"}
            passed = False
            continue
        cpu_mean, gpu_mean = cpu_summary[topology]["knn_top1"]["mean"], gpu_summary[topology]["knn_top1"]["mean"]
        difference = gpu_mean - cpu_mean
        ok = abs(difference) <= tolerance
        passed &= ok
        paired = [gpu_devices[topology][d] - value for d, value in cpu_devices.get(topology, {}).items()
                  if d in gpu_devices.get(topology, {})]
        report[topology] = {
            "cpu_knn_top1_mean": cpu_mean, "gpu_knn_top1_mean": gpu_mean, "difference": difference, "ok": ok,
            "per_device": {
                "n": len(paired),
                "mean_difference": sum(paired) / len(paired) if paired else math.nan,
                "std_difference": (sum((p - sum(paired) / len(paired)) ** 2 for p in paired) / len(paired)) ** 0.5 if paired else math.nan,
                "max_abs_difference": max((abs(p) for p in paired), default=math.nan),
            },
        }
    return passed, report


def run_launcher(
    scenario: Path, overrides: Sequence[str], results_root: Path, accelerator: str, timeout: float | None,
) -> tuple[int, float, Path | None]:
    """Run the scenario through the launcher on ``accelerator``; (exit code, wall seconds, new run directory)."""
    name = scenario_values(scenario, overrides)["scenario.name"]
    before = set((results_root / name).glob("*")) if (results_root / name).is_dir() else set()
    sets = [f"devices.accelerator='{accelerator}'", *overrides, f"scenario.results-dir={results_root.resolve()}"]
    command = [sys.executable, "-m", "crlsc_fl.launch", str(scenario), *[part for s in sets for part in ("--set", s)]]
    if timeout:
        command += ["--timeout", str(timeout)]
    print(f"[gpu-check] {' '.join(command)}", flush=True)
    start = time.perf_counter()
    code = subprocess.run(command, check=False).returncode
    seconds = time.perf_counter() - start
    new = sorted(set((results_root / name).glob("*")) - before) if (results_root / name).is_dir() else []
    return code, seconds, new[-1] if new else None


def validate(scenario: Path, cpu_results: Path, tolerance: float, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Everything checked before the GPU run: the scenario, the tolerance, and that
    ``cpu_results`` is a completed run of this scenario; returns the CPU run's summary."""
    if not tolerance >= 0:
        raise CheckError(f"--tolerance={tolerance} must be >= 0")
    expected = scenario_values(scenario, overrides)
    recorded, cpu_summary = completed_run(cpu_results)
    different = differing_keys(expected, recorded)
    if different:
        shown = ", ".join(f"{k}: {recorded[k]!r} in the CPU run, {expected[k]!r} here" for k in different[:5])
        raise CheckError(f"{cpu_results} is a run of another scenario ({shown}{', ...' if len(different) > 5 else ''})")
    return cpu_summary


def check(
    scenario: Path, cpu_results: Path, tolerance: float, results_root: Path, overrides: Sequence[str] = (),
    timeout: float | None = None, accelerator: str = "cuda",
) -> tuple[int, dict[str, Any]]:
    """Validate, run on ``accelerator`` (``cuda``; ``cpu`` only to test this script), compare;
    (exit code, report). Raises :class:`CheckError` for bad arguments."""
    cpu_summary = validate(scenario, cpu_results, tolerance, overrides)
    code, seconds, gpu_results = run_launcher(scenario, overrides, results_root, accelerator, timeout)
    report: dict[str, Any] = {
        "scenario": str(scenario), "overrides": list(overrides), "accelerator": accelerator, "tolerance": tolerance,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "gpu": gpu_description(),
        "cpu_run": {"results": str(cpu_results), "elapsed_seconds": cpu_summary.get("elapsed_seconds")},
        "gpu_run": {"results": str(gpu_results) if gpu_results else None, "launcher_exit_code": code, "wall_seconds": seconds},
    }
    if code != 0 or gpu_results is None:
        report["passed"] = False
        report["reason"] = f"the {accelerator} run did not complete (launcher exit code {code})"
        return FAILED, report
    report["gpu_run"]["elapsed_seconds"] = json.loads((gpu_results / "summary.json").read_text()).get("elapsed_seconds")
    passed, report["topologies"] = compare(cpu_results, gpu_results, tolerance)
    report["passed"] = passed
    return (PASSED if passed else FAILED), report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n")[0],
                                     epilog="See the module docstring for what is compared and why the tolerance.")
    parser.add_argument("scenario", type=Path, nargs="?", default=DEFAULT_SCENARIO, help="default: %(default)s")
    parser.add_argument("--cpu-results", type=Path, required=True, help="a completed CPU run of the scenario (results/<name>/<run id>)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="allowed |GPU - CPU| of each topology's mean kNN top-1, percentage points (default %(default)s)")
    parser.add_argument("--results-root", type=Path, default=Path("results/gpu-check"), help="where the GPU run writes (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/gpu_check.json"), help="the report (default %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="scenario overrides for the GPU run, e.g. devices.gpus-per-device=0.125 (repeatable)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before the GPU run is stopped")
    args = parser.parse_args(argv)
    gpu = gpu_description()
    if gpu is None:
        print(f"error: {no_gpu_message()}", file=sys.stderr)
        return NO_GPU
    print(f"[gpu-check] {gpu['name']} (torch {gpu['torch']}, CUDA {gpu['cuda']})", flush=True)
    try:
        code, report = check(args.scenario, args.cpu_results, args.tolerance, args.results_root, args.overrides, args.timeout)
    except CheckError as err:
        print(f"error: {err}", file=sys.stderr)
        return BAD_ARGUMENTS
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    for topology, row in report.get("topologies", {}).items():
        if "difference" in row:
            print(f"[gpu-check] {topology}: kNN top-1 CPU {row['cpu_knn_top1_mean']:.2f}, GPU {row['gpu_knn_top1_mean']:.2f}, "
                  f"difference {row['difference']:+.2f} ({'ok' if row['ok'] else 'OUTSIDE'} +-{args.tolerance})")
        else:
            print(f"[gpu-check] {topology}: {row['reason']}")
    run = report["gpu_run"]
    print(f"[gpu-check] GPU run {run['wall_seconds']:.0f} s wall; CPU run {report['cpu_run']['elapsed_seconds']} s (its summary); "
          f"{'PASSED' if report['passed'] else 'FAILED: ' + report.get('reason', 'a topology outside the tolerance')}; {args.out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
