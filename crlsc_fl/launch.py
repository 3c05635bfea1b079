"""Run one scenario as a Flower simulation: ``python -m crlsc_fl.launch scenarios/quick.toml``.

Options::

    python -m crlsc_fl.launch SCENARIO.toml
        [--num-supernodes N]              # default: devices.num-devices of the scenario
        [--federation-config "k=v ..."]   # extra/overriding simulation settings, e.g.
                                          # "client-resources-num-cpus=2 init-args-num-cpus=2"
        [--set KEY=VALUE ...]             # scenario overrides, e.g. --set scenario.rounds=1
        [--timeout S]                     # stop the run after S seconds (exit 124)
        [--app DIR]                       # Flower app root (default: this repository)

What it does, in order:

1. validates the scenario (and the overrides) with :func:`crlsc_fl.config.load_scenario`;
   on error prints the message and exits 2 before anything starts;
2. creates a fresh Flower home ``<repo>/.flwr/sim-<stamp>-<pid>/`` (FLWR_HOME) and starts
   ``flower-superlink --simulation`` on a free loopback port with its own ``state.db``,
   telemetry, update checks and runtime ``uv sync`` disabled, ``CRLSC_PROJECT_ROOT`` exported;
3. runs ``flwr run <repo> crlsc --run-config <scenario> --federation-config
   "num-supernodes=<devices> client-resources-num-cpus=1" --stream`` and streams its output;
4. reads the run's real status with ``flwr ls --run-id <id> --format json`` (``flwr run
   --stream`` exits 0 even when the ServerApp crashed);
5. stops the SuperLink and everything it started (SuperExec, flwr-simulation, Ray), by PID;
6. prints ``[crlsc] run <id>: <status>; results: <dir>; flower logs: <FLWR_HOME>``.

Exit codes: 0 finished:completed, 1 failed/stopped/unknown, 2 invalid scenario,
3 Flower could not be started, 124 timeout, 130 interrupted (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from crlsc_fl import flwr_cli as fc


def build_parser(prog: str = "python -m crlsc_fl.launch") -> argparse.ArgumentParser:
    """The command line of the launcher."""
    parser = argparse.ArgumentParser(prog=prog, description="Run a CRLSC scenario as a Flower simulation.")
    parser.add_argument("scenario", type=Path, help="scenario TOML file, e.g. scenarios/quick.toml")
    parser.add_argument("--num-supernodes", type=int, default=None, help="simulated devices (default: devices.num-devices)")
    parser.add_argument("--federation-config", default=None, help='extra simulation settings, "k=v k2=v2"')
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a scenario key, e.g. scenario.rounds=1 (repeatable)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before the run is stopped")
    parser.add_argument("--app", type=Path, default=None, help="Flower app root (default: this repository)")
    return parser


def prepare_run_config(scenario: Path, overrides: Sequence[str], workdir: Path) -> tuple[Any, Path]:
    """Validate the scenario (then the scenario with overrides); return (config, run-config TOML path).

    Raises ``ValueError`` (``crlsc_fl.config.ConfigError`` is one) with a message for the user.
    """
    from crlsc_fl.config import load_scenario  # lazy: only the validation needs the app's code

    cfg = load_scenario(scenario)
    values = fc.parse_overrides(overrides)
    run_config = fc.merged_run_config(scenario, values, workdir / "run-config.toml")
    if values:
        try:
            cfg = load_scenario(run_config)
        except ValueError as err:
            raise ValueError(f"{scenario} with overrides {values}: {str(err).split(': ', 1)[-1]}") from None
    return cfg, run_config


def validated(scenario: Path, overrides: Sequence[str]) -> tuple[Any, Path, Path]:
    """Like :func:`prepare_run_config` in a temporary directory; returns (config, run-config, tmpdir)."""
    tmp = Path(tempfile.mkdtemp(prefix="crlsc-run-config-"))
    try:
        cfg, run_config = prepare_run_config(scenario, overrides, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return cfg, run_config, tmp


def keep_run_config(run_config: Path, tmp: Path, home: Path) -> Path:
    """Move a merged run config from ``tmp`` into the Flower home (for the record)."""
    if run_config.parent == tmp:
        run_config = Path(shutil.move(str(run_config), home / run_config.name))
    shutil.rmtree(tmp, ignore_errors=True)
    return run_config


@dataclass
class RunPlan:
    """Everything :func:`execute` needs, validated beforehand."""

    cfg: Any  # crlsc_fl.config.ScenarioConfig
    run_config: Path  # the scenario, or a merged copy in ``tmp``
    tmp: Path  # temporary directory of the merged copy (removed by execute)
    project: Path
    mode: str  # "sim" | "deploy": name prefix of the Flower home
    simulation: bool
    flwr_run_args: list[str] = field(default_factory=list)
    supernodes: int = 0  # deployment only: SuperNodes to start
    connect_timeout: float = 60.0
    timeout: float | None = None


def execute(plan: RunPlan, sessions: list[fc.FlowerSession] | None = None) -> int:
    """Start Flower, run, read the real status, stop everything, print the final line.

    ``sessions`` (for tests) receives the :class:`~crlsc_fl.flwr_cli.FlowerSession` so that
    its PIDs can be checked afterwards.
    """
    outcome: fc.Outcome | None = None
    session: fc.FlowerSession | None = None
    error: str | None = None
    code = fc.EXIT_INFRA
    try:
        with fc.SignalGuard():
            session = fc.FlowerSession(plan.project, mode=plan.mode, simulation=plan.simulation)
            if sessions is not None:
                sessions.append(session)
            run_config = keep_run_config(plan.run_config, plan.tmp, session.home)
            with session:
                kind = "SuperLink (simulation)" if plan.simulation else "SuperLink"
                print(f"[crlsc] {kind} on 127.0.0.1:{session.port} ready in {session.startup_seconds:.1f}s; "
                      f"FLWR_HOME={session.home}", flush=True)
                if plan.supernodes:
                    session.start_supernodes(plan.supernodes, wait=plan.connect_timeout)
                    print(f"[crlsc] {plan.supernodes} SuperNodes online", flush=True)
                outcome = session.run(plan.project, run_config, plan.flwr_run_args, timeout=plan.timeout)
                code = outcome.exit_code
    except KeyboardInterrupt:
        error, code = "interrupted", fc.EXIT_INTERRUPTED
    except fc.FlowerError as err:
        print(f"error: {err}", file=sys.stderr)
        error, code = "flower-error", fc.EXIT_INFRA
    finally:
        shutil.rmtree(plan.tmp, ignore_errors=True)
    home = session.home if session else plan.project / ".flwr"
    scenario = plan.cfg.scenario
    run_id = (outcome.run_id if outcome else None) or (session.run_id if session else None)
    results = fc.results_dir(plan.project, scenario.results_dir, scenario.name, run_id)
    if session is not None:
        run_s = f"{outcome.stream.seconds:.1f}s" if outcome else "-"
        print(f"[crlsc] timings: superlink {session.startup_seconds:.1f}s, supernodes "
              f"{session.supernodes_seconds:.1f}s, flwr run {run_s}, shutdown {session.shutdown_seconds:.1f}s", flush=True)
    print(fc.final_line(outcome, results, home, error, run_id), flush=True)
    if session is not None and session.leftovers and code == fc.EXIT_OK:
        code = fc.EXIT_INFRA
    return code


def main(argv: Sequence[str] | None = None, *, sessions: list[fc.FlowerSession] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        cfg, run_config, tmp = validated(args.scenario, args.overrides)
        n = args.num_supernodes or int(cfg.devices.num_devices)
        if n < 1:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ValueError(f"--num-supernodes must be >= 1, got {n}")
        fed = fc.federation_config({"num-supernodes": n, "client-resources-num-cpus": 1}, args.federation_config)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return fc.EXIT_CONFIG
    plan = RunPlan(cfg, run_config, tmp, (args.app or fc.project_root()).resolve(), "sim", True,
                   flwr_run_args=["--federation-config", fed], timeout=args.timeout)
    return execute(plan, sessions)


if __name__ == "__main__":
    sys.exit(main())
