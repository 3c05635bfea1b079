"""Run one scenario as a Flower simulation: ``python -m crlsc_fl.launch scenarios/quick.toml``.

Options::

    python -m crlsc_fl.launch SCENARIO.toml
    python -m crlsc_fl.launch --resume RESULTS_DIR   # continue an interrupted or failed run
    python -m crlsc_fl.launch --clean                # delete device state of finished/abandoned runs
        [--num-supernodes N]              # default: devices.num-devices of the scenario
        [--federation-config "k=v ..."]   # extra/overriding simulation settings, e.g.
                                          # "client-resources-num-cpus=2 init-args-num-cpus=2"
        [--set KEY=VALUE ...]             # scenario overrides, e.g. --set scenario.rounds=1
        [--timeout S]                     # stop the run after S seconds (exit 124)
        [--app DIR]                       # Flower app root (default: this repository)

What it does, in order:

1. validates the scenario (and the overrides) with :func:`crlsc_fl.config.load_scenario`,
   pins every user path (``data.data-dir`` or ``$CRLSC_DATA_DIR``, ``scenario.results-dir``,
   ``$CRLSC_STATE_DIR``, ``$CRLSC_CACHE_DIR``) to the current directory, and loads the
   dataset and partition (:func:`check_data`); on error prints the message and exits 2
   before anything starts;
2. creates a fresh Flower home ``<repo>/.flwr/sim-<stamp>-<pid>/`` (FLWR_HOME) and starts
   ``flower-superlink --simulation`` on a free loopback port with its own ``state.db``,
   telemetry, update checks and runtime ``uv sync`` disabled, ``CRLSC_PROJECT_ROOT`` and
   ``CRLSC_MEMORY_ROOT_PID`` (this process: the ServerApp reports the peak memory of its
   process tree in ``summary.json``) exported;
3. runs ``flwr run <repo> crlsc --run-config <scenario> --federation-config
   "num-supernodes=<devices> client-resources-num-cpus=1" --stream`` and streams its output;
4. reads the run's real status with ``flwr ls --run-id <id> --format json`` (``flwr run
   --stream`` exits 0 even when the ServerApp crashed);
5. stops the SuperLink and everything it started (SuperExec, flwr-simulation, Ray), by PID;
6. prints ``[crlsc] run <id>: <status>; results: <dir>; flower logs: <FLWR_HOME>``, the
   first errors when ``summary.json`` says ``failed``, and, unless the run completed, where
   its device state is kept (size, how to resume, how to delete).

Exit codes: 0 finished:completed, 1 failed/stopped/unknown, 2 invalid scenario,
3 Flower could not be started, 124 timeout, 130 interrupted (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from crlsc_fl import flwr_cli as fc
from crlsc_fl.federation.footprint import MEMORY_ROOT_ENV


def build_parser(prog: str = "python -m crlsc_fl.launch") -> argparse.ArgumentParser:
    """The command line of the launcher."""
    parser = argparse.ArgumentParser(prog=prog, description="Run a CRLSC scenario as a Flower simulation.")
    parser.add_argument("scenario", type=Path, nargs="?", help="scenario TOML file, e.g. scenarios/quick.toml")
    parser.add_argument("--resume", type=Path, metavar="RESULTS_DIR", default=None,
                        help="continue the interrupted or failed run whose results are in RESULTS_DIR")
    parser.add_argument("--clean", action="store_true",
                        help="delete the device state of finished or abandoned runs, list the rest, and exit")
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


# Environment variables holding paths: made absolute before Flower starts, because Flower
# runs the ServerApp and the ClientApps from its own directories.
PATH_ENV = ("CRLSC_DATA_DIR", "CRLSC_STATE_DIR", "CRLSC_CACHE_DIR")


def absolute(path: str, cwd: Path) -> Path:
    """``path`` resolved against the user's working directory ``cwd`` (``~`` expanded)."""
    p = Path(path).expanduser()
    return (p if p.is_absolute() else cwd / p).resolve()


def path_settings(cfg: Any, cwd: Path, environ: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """Scenario overrides and environment entries that pin every user path to ``cwd``.

    ``data.data-dir`` (else ``$CRLSC_DATA_DIR``) and ``scenario.results-dir`` become absolute
    overrides, so every ClientApp and the ServerApp see the directory the user meant;
    ``PATH_ENV`` variables are made absolute in the environment Flower inherits.
    """
    overrides = [f"scenario.results-dir={absolute(cfg.scenario.results_dir, cwd)}"]
    data_dir = cfg.data.data_dir or environ.get("CRLSC_DATA_DIR", "")
    if data_dir and cfg.data.dataset != "synthetic":
        overrides.append(f"data.data-dir={absolute(data_dir, cwd)}")
    env = {name: str(absolute(environ[name], cwd)) for name in PATH_ENV if environ.get(name)}
    return overrides, env


def check_data(cfg: Any) -> None:
    """Load the scenario's dataset and partition now, before Ray starts: a missing dataset or an
    impossible partition is a user error (exit 2), not 100 failing devices. Where no data
    directory was named this also downloads it once (torchvision datasets)."""
    from crlsc_fl.federation.devices import federated_data

    federated_data(cfg)


def prepare(scenario: Path, overrides: Sequence[str], cwd: Path | None = None) -> tuple[Any, Path, Path, dict[str, str]]:
    """Validate, pin user paths to ``cwd``, check the data; return (config, run config, tmpdir, env).

    Raises ``ValueError`` with a message for the user (exit 2).
    """
    from crlsc_fl.data import DatasetNotFoundError

    cfg, run_config, tmp = validated(scenario, overrides)
    shutil.rmtree(tmp, ignore_errors=True)
    pins, env = path_settings(cfg, cwd or Path.cwd(), os.environ)
    cfg, run_config, tmp = validated(scenario, [*overrides, *pins])
    try:
        check_data(cfg)
    except (DatasetNotFoundError, ValueError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(str(err)) from None
    return cfg, run_config, tmp, env


def resume_scenario(results: Path, dest: Path) -> Path:
    """The scenario of the run in ``results`` (its ``config.json``) with ``scenario.resume`` set."""
    config_file = results / "config.json"
    if not config_file.is_file():
        raise ValueError(f"--resume {results}: {config_file} not found; give the results directory of a run")
    values = dict(json.loads(config_file.read_text())["scenario"])
    values["scenario.resume"] = str(results.resolve())
    empty = dest / "empty.toml"
    empty.write_text("")
    return fc.merged_run_config(empty, values, dest / "resume.toml")


def device_state_root(env: Mapping[str, str]) -> Path:
    """Where the devices of a run started with ``env`` keep their state."""
    from crlsc_fl.federation.device_store import STATE_DIR_ENV, state_root

    return Path(env[STATE_DIR_ENV]) if env.get(STATE_DIR_ENV) else state_root()


def report_run(results: Path | None, code: int, outcome_status: str, state_root: Path, run_key: str | None) -> int:
    """After the run: its summary's status and first errors, its device state; returns the exit code."""
    from crlsc_fl.federation import run_state
    from crlsc_fl.federation.failures import describe

    summary_file = results / "summary.json" if results else None
    if summary_file is not None and summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        if summary.get("status") == "running":  # the ServerApp was stopped from outside
            summary["status"] = "interrupted" if code == fc.EXIT_INTERRUPTED else "failed"
            summary_file.write_text(json.dumps(summary, indent=2))
        if summary.get("status") == "failed" and code == fc.EXIT_OK:
            code = fc.EXIT_RUN_FAILED
        if summary.get("status") == "failed":
            print(f"[crlsc] run failed: {summary.get('failure', '')}", flush=True)
        if summary.get("first_errors"):
            print(f"[crlsc] {summary.get('errors')} failed device calls; the first:", flush=True)
            for error in summary["first_errors"]:
                print(f"[crlsc]   {_short(describe(error))}", flush=True)
    if run_key and (state_root / run_key).is_dir():  # devices saved state on this machine
        status = run_state.COMPLETED if code == fc.EXIT_OK else outcome_status
        run_state.write_marker(state_root, run_key, status, results)
        path = state_root / run_key
        if code != fc.EXIT_OK:
            print(f"[crlsc] device state of run {run_key} kept for --resume: {path} "
                  f"({run_state.human(run_state.tree_size(path))})", flush=True)
            if results is not None:
                print(f"[crlsc]   resume: python -m crlsc_fl.launch --resume {results}", flush=True)
            print(f"[crlsc]   delete: rm -rf {path}   (or: python -m crlsc_fl.launch --clean, once abandoned)", flush=True)
    return code


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def clean_device_state(root: Path) -> int:
    """``--clean``: remove finished/abandoned runs' device state, list what is kept."""
    from crlsc_fl.federation import run_state

    removed, kept = run_state.clean(root)
    for state, size in removed:
        print(f"[crlsc] removed {state.path} ({run_state.human(size)}, {state.status})")
    for state, size in kept:
        print(f"[crlsc] kept {state.path} ({run_state.human(size)}; {state.verdict()[len('kept: '):]}); delete: rm -rf {state.path}")
    print(f"[crlsc] device state root {root}: {len(removed)} runs removed "
          f"({run_state.human(sum(size for _, size in removed))}), {len(kept)} kept")
    return fc.EXIT_OK


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
    env: dict[str, str] = field(default_factory=dict)  # added to Flower's environment (absolute paths)


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
            session.env.update(plan.env)
            session.env[MEMORY_ROOT_ENV] = str(os.getpid())  # the ServerApp measures this process tree
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
    if scenario.resume:  # results stay with the run being continued; so does its device state
        results: Path | None = Path(scenario.resume)
        run_key: str | None = str(json.loads((results / "config.json").read_text())["run_id"])
    else:
        results, run_key = fc.results_dir(plan.project, scenario.results_dir, scenario.name, run_id), run_id
    if session is not None:
        run_s = f"{outcome.stream.seconds:.1f}s" if outcome else "-"
        print(f"[crlsc] timings: superlink {session.startup_seconds:.1f}s, supernodes "
              f"{session.supernodes_seconds:.1f}s, flwr run {run_s}, shutdown {session.shutdown_seconds:.1f}s", flush=True)
    print(fc.final_line(outcome, results, home, error, run_id), flush=True)
    if session is not None and session.leftovers and code == fc.EXIT_OK:
        code = fc.EXIT_INFRA
    status = error or (outcome.status if outcome else "not started")
    return report_run(results, code, status, device_state_root({**os.environ, **plan.env}), run_key)


def main(argv: Sequence[str] | None = None, *, sessions: list[fc.FlowerSession] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    if args.clean:
        return clean_device_state(device_state_root({k: str(absolute(v, Path.cwd())) for k, v in os.environ.items() if k in PATH_ENV}))
    resume_tmp = Path(tempfile.mkdtemp(prefix="crlsc-resume-"))
    try:
        if (args.scenario is None) == (args.resume is None):
            raise ValueError("give either a scenario file or --resume RESULTS_DIR")
        scenario = resume_scenario(absolute(str(args.resume), Path.cwd()), resume_tmp) if args.resume else args.scenario
        cfg, run_config, tmp, env = prepare(scenario, args.overrides)
        n = args.num_supernodes or int(cfg.devices.num_devices)
        if n < 1:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ValueError(f"--num-supernodes must be >= 1, got {n}")
        fed = fc.federation_config({"num-supernodes": n, "client-resources-num-cpus": 1}, args.federation_config)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return fc.EXIT_CONFIG
    finally:
        shutil.rmtree(resume_tmp, ignore_errors=True)
    plan = RunPlan(cfg, run_config, tmp, (args.app or fc.project_root()).resolve(), "sim", True,
                   flwr_run_args=["--federation-config", fed], timeout=args.timeout, env=env)
    return execute(plan, sessions)


if __name__ == "__main__":
    sys.exit(main())
