"""The two ways to run a scenario on Flower, as small strategy objects used by the one
command-line flow in :mod:`crlsc_fl.launcher.cli`:

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
import os
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from crlsc_fl.environment import RAY_ADDRESS_ENV
from crlsc_fl.launcher.credentials import Security, load_credentials
from crlsc_fl.launcher.environment import absolute
from crlsc_fl.launcher.overrides import federation_config, federation_settings
from crlsc_fl.launcher.ray_cluster import check_address, check_cluster, requested_target, worker_env

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
        loaded; return :class:`~crlsc_fl.launcher.runner.RunPlan` fields (nothing by default)."""
        return {}

    def check_plan(self, args: argparse.Namespace, plan: Any) -> None:  # noqa: B027  (optional hook)
        """Last checks of a complete plan (a :class:`~crlsc_fl.launcher.runner.RunPlan`) before Flower starts."""

    def devices(self, args: argparse.Namespace, cfg: Any) -> int:
        """SuperNodes to run: the option's value, else the scenario's ``devices.num-devices``."""
        n = args.devices or int(cfg.devices.num_devices)
        if n < 1:
            raise ValueError(f"{self.devices_option} must be >= 1, got {n}")
        return n

    @abstractmethod
    def plan_options(self, args: argparse.Namespace, devices: int, cfg: Any) -> dict[str, Any]:
        """The :class:`~crlsc_fl.launcher.runner.RunPlan` fields this federation sets (raises
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
        target = requested_target(args.ray_address, os.environ)
        if target is None:
            return {}
        check_address(target, federation_settings(CLIENT_RESOURCES, args.federation_config))
        return {"ray": target}

    def check_plan(self, args: argparse.Namespace, plan: Any) -> None:
        """On a Ray cluster: every node runs the ClientApp, sees the data and the device state (exit 3); a client fits (exit 2)."""
        if plan.ray is None:
            return
        data = [plan.cfg.data.data_dir] if plan.cfg.data.data_dir and plan.cfg.data.dataset != "synthetic" else []
        cluster, actors = check_cluster(plan.ray, federation_settings(client_resources(plan.cfg, on_cluster=True), args.federation_config),
                                        worker_env(plan.env), data)
        print(f"[crlsc] {cluster.describe()}: {actors} devices at a time; every node imports the ClientApp and sees "
              f"{', '.join([*data, 'the device-state root'])}", flush=True)

    def plan_options(self, args: argparse.Namespace, devices: int, cfg: Any) -> dict[str, Any]:
        on_cluster = requested_target(args.ray_address, os.environ) is not None
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
