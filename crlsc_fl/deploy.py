"""Run one scenario on a real Flower deployment on loopback: SuperLink + N SuperNodes (= ``crlsc-fl deploy``).

Usage::

    python -m crlsc_fl.deploy scenarios/ci.toml --supernodes 3 [--rounds 2]
        [--set KEY=VALUE ...] [--timeout S] [--app DIR]

``--supernodes`` defaults to the scenario's ``devices.num-devices``; ``--rounds R`` is
``--set scenario.rounds=R``. Overrides are merged into a copy of the scenario TOML, because
``flwr run --run-config`` takes either one TOML path or key=value pairs, never both.
Exit codes are those of :mod:`crlsc_fl.launch` (see :mod:`crlsc_fl.launcher.cli`). Every process started here (SuperLink,
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

import sys

# The one implementation (also behind `crlsc-fl deploy`): main(argv=None, *, prog=..., sessions=None) -> exit code.
from crlsc_fl.launcher.cli import deploy_main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
