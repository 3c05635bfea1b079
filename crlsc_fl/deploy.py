"""Run one scenario on a real Flower deployment on loopback: SuperLink + N SuperNodes.

Usage::

    python -m crlsc_fl.deploy scenarios/ci.toml --supernodes 3 [--rounds 2]
        [--set KEY=VALUE ...] [--timeout S] [--app DIR]

``--supernodes`` defaults to the scenario's ``devices.num-devices``; ``--rounds R`` is
``--set scenario.rounds=R``. Overrides are merged into a copy of the scenario TOML, because
``flwr run --run-config`` takes either one TOML path or key=value pairs, never both.
Exit codes are those of :mod:`crlsc_fl.launch`. Every process started here (SuperLink,
SuperExec, ServerApp, SuperNodes, ClientApps) is stopped by PID at the end, also on Ctrl-C.

The same by hand (for the README; run from the repository root, one terminal each or ``&``)::

    export FLWR_HOME=$PWD/.flwr/manual FLWR_TELEMETRY_ENABLED=0 \\
           FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 CRLSC_PROJECT_ROOT=$PWD
    mkdir -p $FLWR_HOME
    flower-superlink --insecure --host 127.0.0.1 --port 9300 \\
        --database $FLWR_HOME/state.db --disable-runtime-dependency-installation &
    for i in 0 1 2; do
      flower-supernode --insecure --superlink 127.0.0.1:9300 --port $((9310+i)) \\
          --node-config "partition-id=$i num-partitions=3" &
    done
    cat > $FLWR_HOME/config.toml <<'EOF'
    [superlink]
    default = "crlsc-deploy"

    [superlink.crlsc-deploy]
    address = "127.0.0.1:9300"
    insecure = true
    EOF
    flwr supernode ls crlsc-deploy --format json   # wait until 3 nodes say "status": "online" (~5-10 s)
    flwr run . crlsc-deploy --run-config scenarios/ci.toml --stream
    flwr ls crlsc-deploy --format json          # "status": "finished:completed" | "finished:failed"
    kill %1 %2 %3 %4                            # the SuperLink and the 3 SuperNodes
    ps aux | grep -E 'flower-|flwr-'            # their flower-superexec children exit ~10 s later

(The SuperLink's single port serves the Fleet, Control and Runtime HTTP APIs; each
SuperNode's ``--port`` is its own ClientApp runtime API. ``flwr run --stream`` exits 0
even when the ServerApp failed: trust ``flwr ls``.)
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Sequence

from crlsc_fl import flwr_cli as fc
from crlsc_fl.launch import RunPlan, execute, prepare

ROUNDS_KEY = "scenario.rounds"


def build_parser(prog: str = "python -m crlsc_fl.deploy") -> argparse.ArgumentParser:
    """The command line of the deployment runner."""
    parser = argparse.ArgumentParser(prog=prog, description="Run a CRLSC scenario on a loopback Flower deployment.")
    parser.add_argument("scenario", type=Path, help="scenario TOML file, e.g. scenarios/ci.toml")
    parser.add_argument("--supernodes", type=int, default=None, help="SuperNodes to start (default: devices.num-devices)")
    parser.add_argument("--rounds", type=int, default=None, help=f"override {ROUNDS_KEY}")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a scenario key (repeatable)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before the run is stopped")
    parser.add_argument("--connect-timeout", type=float, default=60.0, help="seconds to wait for all SuperNodes")
    parser.add_argument("--app", type=Path, default=None, help="Flower app root (default: this repository)")
    return parser


def main(argv: Sequence[str] | None = None, *, sessions: list[fc.FlowerSession] | None = None) -> int:
    """Entry point; returns the exit code. ``sessions`` (tests) receives the session for PID checks."""
    args = build_parser().parse_args(argv)
    overrides = list(args.overrides) + ([f"{ROUNDS_KEY}={args.rounds}"] if args.rounds is not None else [])
    try:
        cfg, run_config, tmp, env = prepare(args.scenario, overrides)
        n = args.supernodes or int(cfg.devices.num_devices)
        if n < 1:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ValueError(f"--supernodes must be >= 1, got {n}")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return fc.EXIT_CONFIG
    if n != cfg.devices.num_devices:
        print(f"[crlsc] note: {n} SuperNodes but devices.num-devices={cfg.devices.num_devices} in the scenario",
              file=sys.stderr)
    plan = RunPlan(cfg, run_config, tmp, (args.app or fc.project_root()).resolve(), "deploy", False,
                   supernodes=n, connect_timeout=args.connect_timeout, timeout=args.timeout, env=env)
    return execute(plan, sessions)


if __name__ == "__main__":
    sys.exit(main())
