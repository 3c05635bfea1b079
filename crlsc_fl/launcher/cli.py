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
    crlsc-fl keys DIR --nodes N [--host HOST ...] [--days D]     (= python -m crlsc_fl.security.keys)

A run, in order: check the form of a Ray address named by ``--ray-address`` /
``$RAY_ADDRESS`` and that its head answers (:mod:`~crlsc_fl.launcher.ray_cluster`; exit 2 or
3); validate the scenario and overrides, pin user paths and load the data
(:mod:`~crlsc_fl.launcher.scenario`; any problem: exit 2 before a process starts); on a Ray
cluster, check that every node can run the devices (exit 3) and that one fits (exit 2); start a
SuperLink (and SuperNodes) in a fresh Flower home; ``flwr run --stream``; read the real
status with ``flwr ls``; stop every process by PID; print
``[crlsc] run <id>: <status>; results: <dir>; flower logs: <FLWR_HOME>``; report the
summary's errors and the device state kept for ``--resume``.

Exit codes (:class:`~crlsc_fl.launcher.report.ExitCode`): 0 finished:completed,
1 failed/stopped/unknown, 2 invalid scenario or options, 3 Flower could not be started,
124 timeout, 130 interrupted (Ctrl-C, SIGTERM).

The two ways to run a scenario on Flower are small strategy objects (:class:`Federation`) used
by the one command-line flow: they add their options and set the plan's fields.

* :data:`SIMULATION` (``crlsc-fl run`` = ``python -m crlsc_fl.launch``): ``flower-superlink
  --simulation``; the devices are Flower's simulated SuperNodes (Ray actors), set with
  ``--federation-config``, on a private Ray instance or on an existing cluster
  (``--ray-address`` / ``$RAY_ADDRESS``, :mod:`crlsc_fl.launcher.ray_cluster`); supports
  ``--resume`` and ``--clean``;
* :data:`DEPLOYMENT` (``crlsc-fl deploy`` = ``python -m crlsc_fl.deploy``): a SuperLink and
  N real ``flower-supernode`` processes on loopback, over TLS with SuperNode authentication
  (``--keys DIR`` from ``crlsc-fl keys``, else fresh keys per run), or plaintext with ``--insecure``.

Both resolve ``devices.accelerator`` before any process starts (:func:`uses_cuda`): ``"cuda"``
on a machine without CUDA exits 2; a simulation on CUDA asks Ray for ``devices.gpus-per-device``
of a GPU per ClientApp (``client-resources-num-gpus``). On a Ray cluster the launcher's machine
need not have the GPUs: ``"cuda"`` asks for them and the cluster check counts the nodes' GPUs.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crlsc_fl import environment
from crlsc_fl.environment import RAY_ADDRESS_ENV
from crlsc_fl.launcher.processes import FlowerError
from crlsc_fl.launcher.ray_cluster import check_address, check_cluster, requested_target, worker_env
from crlsc_fl.launcher.report import ExitCode, clean_device_state, device_state_root
from crlsc_fl.launcher.scenario import (
    absolute,
    checkout_root,
    federation_config,
    federation_settings,
    pinned_path_env,
    prepare,
    resume_scenario,
)
from crlsc_fl.launcher.session import FlowerSession, RunPlan, execute
from crlsc_fl.security.credentials import Security, load_credentials

PROG = "crlsc-fl"

ROUNDS_KEY = "scenario.rounds"
CLIENT_RESOURCES = {"client-resources-num-cpus": 1}  # one CPU per simulated device unless --federation-config says otherwise


def uses_cuda(cfg: Any, on_cluster: bool = False) -> bool:
    """Whether the devices compute on CUDA (``devices.accelerator``). Here, ``"cuda"`` without
    CUDA raises ``ValueError`` naming the key (exit 2). On a Ray cluster (``on_cluster``) this
    machine cannot tell what the nodes have: ``"cuda"`` is taken as asked (the cluster check
    then needs GPUs on the nodes) and ``"auto"`` is refused."""
    accelerator = cfg.devices.accelerator
    if on_cluster:
        if accelerator == "auto":
            raise ValueError("devices.accelerator='auto' on a Ray cluster: this machine cannot tell whether the nodes "
                             "have GPUs; set 'cuda' (every device on a GPU share) or 'cpu'")
        return bool(accelerator == "cuda")
    from crlsc_fl.accelerator import resolve_device  # lazy: torch, only once a scenario is read

    return resolve_device(accelerator).type == "cuda"


def client_resources(cfg: Any, on_cluster: bool = False) -> dict[str, Any]:
    """What each simulated device's ClientApp asks Ray for: one CPU and, on CUDA,
    ``devices.gpus-per-device`` of a GPU (Ray then runs at most ``GPUs / gpus-per-device``
    ClientApps at a time per node, and sets each one's ``CUDA_VISIBLE_DEVICES``)."""
    resources: dict[str, Any] = dict(CLIENT_RESOURCES)
    if uses_cuda(cfg, on_cluster):
        resources["client-resources-num-gpus"] = cfg.devices.gpus_per_device
    return resources


class Federation(ABC):
    """What differs between the simulation and the deployment; the rest of a run is shared."""

    mode = ""  # name prefix of the Flower home
    simulation = False  # flower-superlink --simulation
    supports_resume = False  # --resume RESULTS_DIR and --clean
    devices_option = ""  # the option giving the number of SuperNodes (stored as ``args.devices``)
    description = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:  # noqa: B027  (optional hook)
        """Add the options only this federation has."""

    def extra_overrides(self, args: argparse.Namespace) -> list[str]:
        """``key=value`` overrides implied by this federation's options (after the user's ``--set``)."""
        return []

    def preflight(self, args: argparse.Namespace) -> dict[str, Any]:
        """Check what the options name outside this process before the scenario's data is
        loaded; return :class:`~crlsc_fl.launcher.session.RunPlan` fields (nothing by default)."""
        return {}

    def check_plan(self, args: argparse.Namespace, plan: RunPlan) -> None:  # noqa: B027  (optional hook)
        """Last checks of a complete plan (a :class:`~crlsc_fl.launcher.session.RunPlan`) before Flower starts."""

    def devices(self, args: argparse.Namespace, cfg: Any) -> int:
        """SuperNodes to run: the option's value, else the scenario's ``devices.num-devices``."""
        n = args.devices or int(cfg.devices.num_devices)
        if n < 1:
            raise ValueError(f"{self.devices_option} must be >= 1, got {n}")
        return n

    @abstractmethod
    def plan_options(self, args: argparse.Namespace, devices: int, cfg: Any) -> dict[str, Any]:
        """The :class:`~crlsc_fl.launcher.session.RunPlan` fields this federation sets (raises
        ``ValueError`` for the user, e.g. ``devices.accelerator="cuda"`` without CUDA)."""

    def note(self, devices: int, cfg: Any) -> None:  # noqa: B027  (optional hook)
        """Print what the user may not expect about the chosen setup (nothing by default)."""


class Simulation(Federation):
    """Flower simulation: one SuperLink with ``--simulation``; ``flwr run`` sets the simulated nodes."""

    mode = "sim"
    simulation = True
    supports_resume = True
    devices_option = "--num-supernodes"
    description = "Run a CRLSC scenario as a Flower simulation."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(self.devices_option, dest="devices", metavar="N", type=int, default=None,
                            help="simulated devices (default: devices.num-devices)")
        parser.add_argument("--federation-config", default=None,
                            help='extra simulation settings, "k=v k2=v2", e.g. "client-resources-num-cpus=2"')
        parser.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                            help=f"run on the existing Ray cluster whose head (`ray start --head`) listens there "
                                 f"(default: ${RAY_ADDRESS_ENV}; '' or 'local': a private Ray instance)")

    def preflight(self, args: argparse.Namespace) -> dict[str, Any]:
        """With a Ray address: its form, the federation settings, the head's port (exit 2 or 3)."""
        target = requested_target(args.ray_address)
        if target is None:
            return {}
        check_address(target, federation_settings(CLIENT_RESOURCES, args.federation_config))
        return {"ray": target}

    def check_plan(self, args: argparse.Namespace, plan: RunPlan) -> None:
        """On a Ray cluster: every node runs the ClientApp, sees the data and the device state (exit 3); a client fits (exit 2)."""
        if plan.ray is None:
            return
        data = [plan.cfg.data.data_dir] if plan.cfg.data.data_dir and plan.cfg.data.dataset != "synthetic" else []
        cluster, actors = check_cluster(plan.ray, federation_settings(client_resources(plan.cfg, on_cluster=True), args.federation_config),
                                        worker_env(plan.env), data)
        print(f"[crlsc] {cluster.describe()}: {actors} devices at a time; every node imports the ClientApp and sees "
              f"{', '.join([*data, 'the device-state root'])}", flush=True)

    def plan_options(self, args: argparse.Namespace, devices: int, cfg: Any) -> dict[str, Any]:
        on_cluster = requested_target(args.ray_address) is not None
        defaults = {"num-supernodes": devices, **client_resources(cfg, on_cluster)}
        return {"flwr_run_args": ["--federation-config", federation_config(defaults, args.federation_config)]}


class Deployment(Federation):
    """Loopback deployment: a SuperLink and ``devices`` ``flower-supernode`` processes."""

    mode = "deploy"
    simulation = False
    devices_option = "--supernodes"
    description = "Run a CRLSC scenario on a loopback Flower deployment."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            self.devices_option, dest="devices", metavar="N", type=int, default=None, help="SuperNodes to start (default: devices.num-devices)"
        )
        parser.add_argument("--rounds", type=int, default=None, help=f"override {ROUNDS_KEY}")
        parser.add_argument("--connect-timeout", type=float, default=60.0, help="seconds to wait for all SuperNodes")
        security = parser.add_mutually_exclusive_group()
        security.add_argument("--keys", type=Path, default=None, metavar="DIR",
                              help="CA, server certificate and node-<i> keys made by `crlsc-fl keys DIR --nodes N` "
                                   "(default: a fresh set for this run in its Flower home)")
        security.add_argument("--insecure", action="store_true",
                              help="plaintext HTTP without SuperNode authentication: loopback experiments only")

    def extra_overrides(self, args: argparse.Namespace) -> list[str]:
        return [f"{ROUNDS_KEY}={args.rounds}"] if args.rounds is not None else []

    def plan_options(self, args: argparse.Namespace, devices: int, cfg: Any) -> dict[str, Any]:
        """Also checks ``--keys`` for ``devices`` SuperNodes (a bad file: ``ValueError``, exit 2, nothing started)
        and ``devices.accelerator`` (``"cuda"`` without CUDA: exit 2, not in every SuperNode)."""
        uses_cuda(cfg)
        keys = load_credentials(absolute(str(args.keys), Path.cwd()), devices) if args.keys else None
        return {"supernodes": devices, "connect_timeout": args.connect_timeout,
                "security": Security(insecure=args.insecure, keys=keys)}

    def note(self, devices: int, cfg: Any) -> None:
        if devices != cfg.devices.num_devices:
            print(f"[crlsc] note: {devices} SuperNodes but devices.num-devices={cfg.devices.num_devices} in the scenario",
                  file=sys.stderr)


SIMULATION = Simulation()
DEPLOYMENT = Deployment()


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
        return int(clean_device_state(device_state_root(pinned_path_env(environment.current(), Path.cwd()))))
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
    "keys": Command("crlsc_fl.security.keys:main",
                    "make the CA, SuperLink certificate and SuperNode keys of a secure deployment (= python -m crlsc_fl.security.keys)"),
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
