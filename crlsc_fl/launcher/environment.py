"""Where and with which environment Flower runs: the Flower home, environment variables,
the loopback connection, and user paths made absolute.

Every invocation gets its own Flower home, ``<app root>/.flwr/<mode>-<stamp>-<pid>/``
(``FLWR_HOME``), holding ``config.toml`` (one ``[superlink.<name>]`` connection with an
explicit loopback address), the SuperLink database ``state.db``, one log file per started
process, a deployment's fresh keys (``keys/``) and the installed app (``apps/``, removed
at the end). ``<app root>/.flwr/`` is
excluded from FABs by Flower itself and ignores itself for git (``.flwr/.gitignore`` = ``*``),
so parallel invocations (a test beside a long run) never share ports, state or config.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import tomli_w

from crlsc_fl.environment import PATH_VARIABLES, PROJECT_ROOT_ENV, RAY_ADDRESS_ENV
from crlsc_fl.launcher.errors import FlowerError

FLOWER_HOMES = ".flwr"  # under the app root; Flower leaves it out of the FAB it builds
# Environment variables holding paths: made absolute before Flower starts, because Flower
# runs the ServerApp and the ClientApps from its own directories.
# Read by crlsc_fl.outputs.results: where a relative scenario.results-dir is anchored.


def checkout_root() -> Path:
    """This source checkout: the default Flower app root (it holds ``pyproject.toml``).

    Not :func:`crlsc_fl.outputs.run_dir.results_anchor`, which is where the *ServerApp*
    anchors relative results directories (``$CRLSC_PROJECT_ROOT``, set from the app root).
    """
    return Path(__file__).resolve().parents[2]


def absolute(path: str, cwd: Path) -> Path:
    """``path`` resolved against the user's working directory ``cwd`` (``~`` expanded)."""
    p = Path(path).expanduser()
    return (p if p.is_absolute() else cwd / p).resolve()


def pinned_path_env(environ: Mapping[str, str], cwd: Path) -> dict[str, str]:
    """The set, non-empty :data:`PATH_VARIABLES` variables of ``environ`` made absolute against ``cwd``."""
    return {name: str(absolute(environ[name], cwd)) for name in PATH_VARIABLES if environ.get(name)}


def make_flwr_home(root: Path, mode: str) -> Path:
    """Create a fresh per-invocation FLWR_HOME ``<root>/.flwr/<mode>-<stamp>-<pid>``."""
    base = root / FLOWER_HOMES
    base.mkdir(parents=True, exist_ok=True)
    ignore = base / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# written by crlsc_fl.launcher: per-run Flower homes, never committed\n*\n")
    stem = f"{mode}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    for i in range(100):  # two homes in the same second from the same process get a suffix
        home = base / (stem if i == 0 else f"{stem}-{i}")
        try:
            home.mkdir()
            return home
        except FileExistsError:
            continue
    raise FlowerError(f"cannot create a fresh Flower home {base / stem}")


def flwr_env(home: Path, project: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for every Flower process of one invocation.

    No telemetry or update check (no internet), no runtime ``uv sync`` of the app's
    dependencies (they are installed in this venv), unbuffered Python output so that
    ``flwr run --stream`` reaches the terminal line by line, and ``CRLSC_PROJECT_ROOT`` so
    the ServerApp (which runs from ``$FLWR_HOME/apps/...``) knows where ``results/`` is.
    """
    env = dict(os.environ if base is None else base)
    env.update(
        FLWR_HOME=str(home),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        PYTHONUNBUFFERED="1",
    )
    env[PROJECT_ROOT_ENV] = str(project)
    # never join a Ray cluster by accident: `crlsc-fl run` honours $RAY_ADDRESS by checking it
    # and handing it on explicitly (crlsc_fl.launcher.ray_cluster.driver_env)
    env.pop(RAY_ADDRESS_ENV, None)
    # Make sure the Flower executables of *this* interpreter are found first.
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_connection(home: Path, name: str, address: str, root_certificates: Path | None = None) -> Path:
    """Write ``$FLWR_HOME/config.toml`` with one SuperLink connection as default.

    With ``root_certificates`` (the deployment's CA certificate; Flower wants an absolute
    path) the ``flwr`` CLI speaks TLS and trusts only that CA; without, plaintext
    (``insecure = true``).
    """
    path = home / "config.toml"
    security = {"root-certificates": str(root_certificates.resolve())} if root_certificates else {"insecure": True}
    path.write_text(tomli_w.dumps({"superlink": {"default": name, name: {"address": address, **security}}}))
    return path
