"""One run from a validated plan: start Flower, ``flwr run``, read the real status, stop
everything, print the final line, report the summary and the device state.

The same for a simulation (``crlsc-fl run``) and a loopback deployment (``crlsc-fl deploy``);
what differs is in the :class:`RunPlan` (see :mod:`crlsc_fl.launcher.modes`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crlsc_fl.environment import MEMORY_ROOT_ENV, STATE_DIR_ENV
from crlsc_fl.launcher.credentials import Credentials, Security
from crlsc_fl.launcher.errors import FlowerError
from crlsc_fl.launcher.keys import make_keys
from crlsc_fl.launcher.outcome import ExitCode, Outcome, final_line, results_dir
from crlsc_fl.launcher.ray_cluster import RayTarget, driver_env, worker_env
from crlsc_fl.launcher.report import device_state_root, report_run
from crlsc_fl.launcher.session import FlowerSession
from crlsc_fl.launcher.signals import SignalGuard


@dataclass
class RunPlan:
    """Everything :func:`execute` needs, validated beforehand."""

    cfg: Any  # crlsc_fl.scenario.config.ScenarioConfig
    run_config: Path  # the scenario, or a merged copy in ``tmp``
    tmp: Path  # temporary directory of the merged copy (removed by execute)
    project: Path  # the Flower app root
    mode: str  # "sim" | "deploy": name prefix of the Flower home
    simulation: bool
    flwr_run_args: list[str] = field(default_factory=list)
    supernodes: int = 0  # deployment only: SuperNodes to start
    connect_timeout: float = 60.0
    security: Security | None = None  # deployment only (None: plaintext, as the simulation's SuperLink)
    timeout: float | None = None
    env: dict[str, str] = field(default_factory=dict)  # added to Flower's environment (absolute paths)
    ray: RayTarget | None = None  # simulation on this existing Ray cluster (None: a private Ray instance)


def keep_run_config(run_config: Path, tmp: Path, home: Path) -> Path:
    """Move a merged run config from ``tmp`` into the Flower home (for the record)."""
    if run_config.parent == tmp:
        run_config = Path(shutil.move(str(run_config), home / run_config.name))
    shutil.rmtree(tmp, ignore_errors=True)
    return run_config


def fresh_keys(directory: Path, supernodes: int) -> Credentials:
    """A CA, a loopback server certificate and ``supernodes`` node keys for this run only."""
    try:
        return make_keys(directory, supernodes)[0]
    except (OSError, ValueError) as err:
        raise FlowerError(f"cannot make fresh keys in {directory}: {err}") from err


def run_flower(plan: RunPlan, session: FlowerSession) -> Outcome:
    """Start the SuperLink (and SuperNodes), run the app; the session stops everything after."""
    session.env.update(plan.env)
    if plan.ray is not None:
        worker = worker_env(plan.env)
        session.env.update(driver_env(plan.ray.address, worker))
        print(f"[crlsc] the simulation joins the Ray cluster at {plan.ray.address}; device state in {worker[STATE_DIR_ENV]}",
              flush=True)
    session.env[MEMORY_ROOT_ENV] = str(os.getpid())  # the ServerApp measures this process tree
    run_config = keep_run_config(plan.run_config, plan.tmp, session.home)
    if plan.security is not None:
        print(f"[crlsc] {plan.security.describe()}", flush=True)
        if not plan.security.insecure:
            session.credentials = plan.security.keys or fresh_keys(session.home / "keys", plan.supernodes)
    with session:
        kind = "SuperLink (simulation)" if plan.simulation else f"SuperLink ({'TLS' if session.credentials else 'plaintext'})"
        print(f"[crlsc] {kind} on 127.0.0.1:{session.port} ready in {session.startup_seconds:.1f}s; "
              f"FLWR_HOME={session.home}", flush=True)
        if plan.supernodes:
            session.start_supernodes(plan.supernodes, wait=plan.connect_timeout)
            print(f"[crlsc] {plan.supernodes} SuperNodes online", flush=True)
        return session.run(plan.project, run_config, plan.flwr_run_args, timeout=plan.timeout)


def execute(plan: RunPlan, sessions: list[FlowerSession] | None = None) -> int:
    """Start Flower, run, read the real status, stop everything, print the final line.

    ``sessions`` (for tests) receives the :class:`FlowerSession` so that its PIDs can be
    checked afterwards.
    """
    outcome: Outcome | None = None
    session: FlowerSession | None = None
    error: str | None = None
    code = ExitCode.INFRA
    try:
        with SignalGuard():
            session = FlowerSession(plan.project, mode=plan.mode, simulation=plan.simulation)
            if sessions is not None:
                sessions.append(session)
            outcome = run_flower(plan, session)
            code = outcome.exit_code
    except KeyboardInterrupt:
        error, code = "interrupted", ExitCode.INTERRUPTED
    except FlowerError as err:
        print(f"error: {err}", file=sys.stderr)
        error, code = "flower-error", ExitCode.INFRA
    finally:
        shutil.rmtree(plan.tmp, ignore_errors=True)
    home = session.home if session else plan.project / ".flwr"
    scenario = plan.cfg.scenario
    run_id = (outcome.run_id if outcome else None) or (session.run_id if session else None)
    if scenario.resume:  # results stay with the run being continued; so does its device state
        results: Path | None = Path(scenario.resume)
        run_key: str | None = str(json.loads((Path(scenario.resume) / "config.json").read_text())["run_id"])
    else:
        results, run_key = results_dir(plan.project, scenario.results_dir, scenario.name, run_id), run_id
    if session is not None:
        run_s = f"{outcome.stream.seconds:.1f}s" if outcome else "-"
        print(f"[crlsc] timings: superlink {session.startup_seconds:.1f}s, supernodes "
              f"{session.supernodes_seconds:.1f}s, flwr run {run_s}, shutdown {session.shutdown_seconds:.1f}s", flush=True)
    print(final_line(outcome, results, home, error, run_id), flush=True)
    if session is not None and session.leftovers and code == ExitCode.OK:
        code = ExitCode.INFRA
    status = error or (outcome.status if outcome else "not started")
    return int(report_run(results, code, status, device_state_root({**os.environ, **plan.env}), run_key))
