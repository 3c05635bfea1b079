"""The ``crlsc-fl`` command and the one flow behind ``crlsc-fl run`` / ``crlsc-fl deploy``.

    crlsc-fl run SCENARIO [--set KEY=VALUE ...] [--timeout S] [--num-supernodes N]
                 [--federation-config "k=v ..."] [--ray-address HOST:PORT] [--app DIR]
                                                                 (= python -m crlsc_fl.launch)
    crlsc-fl run --resume RESULTS_DIR | --clean
    crlsc-fl deploy SCENARIO [--supernodes N] [--rounds R] [--set ...] [--timeout S]
                 [--connect-timeout S] [--app DIR] [--keys DIR | --insecure]
                                                                 (= python -m crlsc_fl.deploy)
    crlsc-fl compare RUN_DIR ... --out DIR                       (= python -m crlsc_fl.outputs.compare)
    crlsc-fl stage2 --run-dir DIR ... --out DIR                  (= python -m crlsc_fl.stage2)
    crlsc-fl keys DIR --nodes N [--host HOST ...] [--days D]     (= python -m crlsc_fl.launcher.keys)

A run, in order: check the form of a Ray address named by ``--ray-address`` /
``$RAY_ADDRESS`` and that its head answers (:mod:`~crlsc_fl.launcher.ray_cluster`; exit 2 or
3); validate the scenario and overrides, pin user paths and load the data
(:mod:`~crlsc_fl.launcher.scenario`; any problem: exit 2 before a process starts); on a Ray
cluster, check that every node can run the devices (exit 3) and that one fits (exit 2); start a
SuperLink (and SuperNodes) in a fresh Flower home; ``flwr run --stream``; read the real
status with ``flwr ls``; stop every process by PID; print
``[crlsc] run <id>: <status>; results: <dir>; flower logs: <FLWR_HOME>``; report the
summary's errors and the device state kept for ``--resume``.

Exit codes (:class:`~crlsc_fl.launcher.outcome.ExitCode`): 0 finished:completed,
1 failed/stopped/unknown, 2 invalid scenario or options, 3 Flower could not be started,
124 timeout, 130 interrupted (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from crlsc_fl.launcher.environment import absolute, checkout_root, pinned_path_env
from crlsc_fl.launcher.errors import FlowerError
from crlsc_fl.launcher.modes import DEPLOYMENT, SIMULATION, Federation
from crlsc_fl.launcher.outcome import ExitCode
from crlsc_fl.launcher.report import clean_device_state, device_state_root
from crlsc_fl.launcher.runner import RunPlan, execute
from crlsc_fl.launcher.scenario import prepare, resume_scenario
from crlsc_fl.launcher.session import FlowerSession

PROG = "crlsc-fl"


def build_parser(federation: Federation, prog: str) -> argparse.ArgumentParser:
    """The command line of one federation: shared by ``crlsc-fl run|deploy`` and ``python -m crlsc_fl.launch|deploy``."""
    parser = argparse.ArgumentParser(prog=prog, description=federation.description)
    if federation.supports_resume:
        parser.add_argument("scenario", type=Path, nargs="?", help="scenario TOML file, e.g. scenarios/quick.toml")
        parser.add_argument("--resume", type=Path, metavar="RESULTS_DIR", default=None,
                            help="continue the interrupted or failed run whose results are in RESULTS_DIR")
        parser.add_argument("--clean", action="store_true",
                            help="delete the device state of finished or abandoned runs, list the rest, and exit")
    else:
        parser.add_argument("scenario", type=Path, help="scenario TOML file, e.g. scenarios/ci.toml")
    federation.add_arguments(parser)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a scenario key, e.g. scenario.rounds=1 (repeatable)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before the run is stopped (exit 124)")
    parser.add_argument("--app", type=Path, default=None, help="Flower app root (default: this repository)")
    return parser


def scenario_file(args: argparse.Namespace, workdir: Path) -> Path:
    """The scenario to run: the positional file, or (``--resume``) the resumed run's scenario written to ``workdir``."""
    resume = getattr(args, "resume", None)
    if (args.scenario is None) == (resume is None):
        raise ValueError("give either a scenario file or --resume RESULTS_DIR")
    return resume_scenario(absolute(str(resume), Path.cwd()), workdir) if resume else args.scenario


def plan_run(federation: Federation, args: argparse.Namespace) -> RunPlan:
    """Validate everything the command line names; raises ``ValueError`` for the user (exit 2),
    ``FlowerError`` if what it names outside this process cannot be used (exit 3)."""
    early = federation.preflight(args)
    resume_tmp = Path(tempfile.mkdtemp(prefix="crlsc-resume-"))
    try:
        scenario = scenario_file(args, resume_tmp)
        cfg, run_config, tmp, env = prepare(scenario, [*args.overrides, *federation.extra_overrides(args)])
    finally:
        shutil.rmtree(resume_tmp, ignore_errors=True)
    try:
        devices = federation.devices(args, cfg)
        options = {**early, **federation.plan_options(args, devices, cfg)}
        plan = RunPlan(cfg, run_config, tmp, (args.app or checkout_root()).resolve(), federation.mode,
                       federation.simulation, timeout=args.timeout, env=env, **options)
        federation.check_plan(args, plan)
    except (ValueError, FlowerError):
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    federation.note(devices, cfg)
    return plan


def run_federation(federation: Federation, args: argparse.Namespace, sessions: list[FlowerSession] | None = None) -> int:
    """The one main flow of ``run`` and ``deploy``: clean, or plan (exit 2 on bad input) and execute."""
    if getattr(args, "clean", False):
        return int(clean_device_state(device_state_root(pinned_path_env(os.environ, Path.cwd()))))
    try:
        plan = plan_run(federation, args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    except FlowerError as err:
        print(f"error: {err}", file=sys.stderr)
        return int(ExitCode.INFRA)
    return execute(plan, sessions)


def run_main(argv: Sequence[str] | None = None, *, prog: str = "python -m crlsc_fl.launch",
             sessions: list[FlowerSession] | None = None) -> int:
    """``crlsc-fl run`` / ``python -m crlsc_fl.launch``; ``sessions`` (tests) receives the Flower session."""
    return run_federation(SIMULATION, build_parser(SIMULATION, prog).parse_args(argv), sessions)


def deploy_main(argv: Sequence[str] | None = None, *, prog: str = "python -m crlsc_fl.deploy",
                sessions: list[FlowerSession] | None = None) -> int:
    """``crlsc-fl deploy`` / ``python -m crlsc_fl.deploy``; ``sessions`` (tests) receives the Flower session."""
    return run_federation(DEPLOYMENT, build_parser(DEPLOYMENT, prog).parse_args(argv), sessions)


@dataclass(frozen=True)
class Command:
    """One ``crlsc-fl`` subcommand: the ``main(argv, prog=...)`` it runs, imported only when chosen
    (``stage2`` pulls in torch)."""

    target: str  # "module:function"
    help: str

    def load(self) -> Callable[..., int]:
        module, function = self.target.split(":")
        return getattr(importlib.import_module(module), function)


COMMANDS = {
    "run": Command("crlsc_fl.launcher.cli:run_main", "run a scenario as a Flower simulation (= python -m crlsc_fl.launch)"),
    "deploy": Command("crlsc_fl.launcher.cli:deploy_main",
                      "run a scenario on SuperLink + SuperNodes on loopback, TLS + node keys (= python -m crlsc_fl.deploy)"),
    "compare": Command("crlsc_fl.outputs.compare:main", "plot finished runs side by side (= python -m crlsc_fl.outputs.compare)"),
    "stage2": Command("crlsc_fl.stage2.__main__:main",
                      "probe table and semantic-communication figures for encoders (= python -m crlsc_fl.stage2)"),
    "keys": Command("crlsc_fl.launcher.keys:main",
                    "make the CA, SuperLink certificate and SuperNode keys of a secure deployment (= python -m crlsc_fl.launcher.keys)"),
}


def build_top_parser() -> argparse.ArgumentParser:
    """``crlsc-fl COMMAND ...``: everything after COMMAND goes to that command's own parser."""
    listing = "\n".join(f"  {name:<9} {command.help}" for name, command in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog=PROG, description="CRLSC federated learning on Flower.", formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"commands:\n{listing}\n\n'{PROG} COMMAND --help' shows the options of a command.",
    )
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help=f"one of: {', '.join(COMMANDS)}")
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help="the command's arguments")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crlsc-fl`` console script; returns the exit code."""
    parser = build_top_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        parser.error(f"give a COMMAND, one of: {', '.join(COMMANDS)}")
    args = parser.parse_args(argv)
    return COMMANDS[args.command].load()(args.arguments, prog=f"{PROG} {args.command}")


if __name__ == "__main__":
    sys.exit(main())
