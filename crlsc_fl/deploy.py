"""Run one scenario on a real Flower deployment on loopback: SuperLink + N SuperNodes (= ``crlsc-fl deploy``).

Usage::

    python -m crlsc_fl.deploy scenarios/ci.toml --supernodes 3 [--rounds 2]
        [--set KEY=VALUE ...] [--timeout S] [--app DIR] [--keys DIR | --insecure]

``--supernodes`` defaults to the scenario's ``devices.num-devices``; ``--rounds R`` is
``--set scenario.rounds=R``. Overrides are merged into a copy of the scenario TOML, because
``flwr run --run-config`` takes either one TOML path or key=value pairs, never both.
Exit codes are those of :mod:`crlsc_fl.launch` (see :mod:`crlsc_fl.launcher.cli`). Every process started here (SuperLink,
SuperExec, ServerApp, SuperNodes, ClientApps) is stopped by PID at the end, also on Ctrl-C.

Security: by default the SuperLink serves TLS with a certificate of our own CA and
``--enable-supernode-auth``; each SuperNode's public key is registered (``flwr supernode
register``) before it starts with its private key and the CA certificate, so only those
keys join, and the ``flwr`` CLI trusts only that CA. ``--keys DIR`` uses the CA, server
certificate and ``node-<i>`` keys made by ``crlsc-fl keys DIR --nodes N`` (all checked
before anything starts: a missing, unreadable, malformed or mismatched file is exit 2 with
its name); without it a fresh set is made for the run in ``$FLWR_HOME/keys``. ``--insecure``
runs everything in plaintext without SuperNode authentication (loopback experiments only;
the run says so). Flower 1.42's Control API (``flwr run``, ``flwr supernode register``) on
the same port has no authentication of its own: see the README on deploying across hosts.

The same by hand (for the README; run from the repository root, one terminal each or ``&``)::

    export FLWR_HOME=$PWD/.flwr/manual FLWR_TELEMETRY_ENABLED=0 \\
           FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 CRLSC_PROJECT_ROOT=$PWD
    K=$FLWR_HOME/keys
    crlsc-fl keys $K --nodes 3     # ca.crt ca.key server.crt server.key node-{0,1,2}.key node-{0,1,2}.pub
    flower-superlink --host 127.0.0.1 --port 9300 \\
        --ssl-ca-certfile $K/ca.crt --ssl-certfile $K/server.crt --ssl-keyfile $K/server.key \\
        --enable-supernode-auth \\
        --database $FLWR_HOME/state.db --disable-runtime-dependency-installation &
    until curl -sf --cacert $K/ca.crt https://127.0.0.1:9300/health; do sleep 1; done   # up (~5 s)
    cat > $FLWR_HOME/config.toml <<EOF
    [superlink]
    default = "crlsc-deploy"

    [superlink.crlsc-deploy]
    address = "127.0.0.1:9300"
    root-certificates = "$K/ca.crt"
    EOF
    for i in 0 1 2; do flwr supernode register $K/node-$i.pub crlsc-deploy; done
    for i in 0 1 2; do
      flower-supernode --superlink 127.0.0.1:9300 --root-certificates $K/ca.crt \\
          --auth-supernode-private-key $K/node-$i.key --port $((9310+i)) \\
          --node-config "partition-id=$i num-partitions=3" &
    done
    flwr supernode ls crlsc-deploy --format json   # wait until 3 nodes say "status": "online" (~5-10 s)
    sed 's/^num-devices = 5$/num-devices = 3/' scenarios/ci.toml > $FLWR_HOME/ci-3.toml   # one device per SuperNode
    flwr run . crlsc-deploy --run-config $FLWR_HOME/ci-3.toml --stream
    flwr ls crlsc-deploy --format json          # "status": "finished:completed" | "finished:failed"
    kill %1 %2 %3 %4                            # the SuperLink and the 3 SuperNodes
    ps aux | grep -E 'flower-|flwr-'            # their flower-superexec children exit ~10 s later

(``root-certificates`` must be an absolute path. The SuperLink's single port serves the
Fleet, Control and Runtime HTTP APIs, all over TLS; each SuperNode's ``--port`` is its own
ClientApp runtime API, plaintext on 127.0.0.1. A SuperNode whose key is not registered exits
with ``[code: 2004] Failed to activate SuperNode``; one without the CA certificate with
``CERTIFICATE_VERIFY_FAILED``; one without a key with ``[code: 2001] SuperNode
authentication is enabled``. ``flwr run --stream`` exits 0 even when the ServerApp failed:
trust ``flwr ls``. Plaintext instead: ``--insecure`` on the SuperLink and every SuperNode,
``insecure = true`` instead of ``root-certificates``, no registration.)
"""

from __future__ import annotations

import sys

# The one implementation (also behind `crlsc-fl deploy`): main(argv=None, *, prog=..., sessions=None) -> exit code.
from crlsc_fl.launcher.cli import deploy_main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
