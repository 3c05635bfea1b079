"""Flower's side of a run: its home and environment, and the calls of its ``flwr`` command.

The Flower home: every invocation gets its own, ``<app root>/.flwr/<mode>-<stamp>-<pid>/``
(``FLWR_HOME``), holding ``config.toml`` (one ``[superlink.<name>]`` connection with an
explicit loopback address, which the ``flwr`` CLI reads), the SuperLink database
``state.db``, one log file per started process, a deployment's fresh keys (``keys/``) and the
installed app (``apps/``, removed at the end). ``<app root>/.flwr/`` is excluded from FABs by
Flower itself and ignores itself for git (``.flwr/.gitignore`` = ``*``), so parallel
invocations (a test beside a long run) never share ports, state or config.

The calls: ``flwr ls`` / ``flwr supernode ls|register`` (JSON) and ``flwr run --stream``
(output streamed live). ``flwr run --stream`` exits 0 even when the ServerApp crashed: the
real status comes from ``flwr ls --run-id <id> --format json``
(``finished:completed|failed|stopped``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import tomli_w

from crlsc_fl import environment
from crlsc_fl.environment import FLOWER_HOME_ENV, FLOWER_SETTINGS, PATH_ENV, PROJECT_ROOT_ENV, RAY_ADDRESS_ENV
from crlsc_fl.launcher.processes import FlowerError, PollTimeout, poll_until

RUN_ID_RE = re.compile(r"Successfully started run (\d+)")
STATUS_COMPLETED = "finished:completed"
STATUS_POLL_INTERVAL = 1.0  # seconds between `flwr ls` calls while a run finishes
FLOWER_HOMES = ".flwr"  # under the app root; Flower leaves it out of the FAB it builds


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
    env = environment.current() if base is None else dict(base)
    env[FLOWER_HOME_ENV] = str(home)
    env.update(FLOWER_SETTINGS)
    env[PROJECT_ROOT_ENV] = str(project)
    # never join a Ray cluster by accident: `crlsc-fl run` honours $RAY_ADDRESS by checking it
    # and handing it on explicitly (crlsc_fl.launcher.ray_cluster.driver_env)
    env.pop(RAY_ADDRESS_ENV, None)
    # Make sure the Flower executables of *this* interpreter are found first.
    bindir = str(Path(sys.executable).parent)
    env[PATH_ENV] = bindir + os.pathsep + env.get(PATH_ENV, "")
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


@dataclass(frozen=True)
class RunInfo:
    """One run as reported by ``flwr ls --format json``."""

    run_id: str
    status: str  # pending | starting | running | finished:completed | finished:failed | finished:stopped
    details: str = ""
    pending_at: str = ""
    elapsed: float = 0.0

    @property
    def finished(self) -> bool:
        """True once the run reached a final state."""
        return self.status.startswith("finished")

    @property
    def succeeded(self) -> bool:
        """True only for ``finished:completed``."""
        return self.status == STATUS_COMPLETED


def json_reply(text: str, command: str, *, require_success: bool) -> dict[str, Any]:
    """The JSON object a ``flwr ... --format json`` call printed (text before it is skipped).

    With ``require_success`` a reply without ``"success": true`` is an error.
    """
    start = text.find("{")
    if start < 0:
        raise ValueError(f"no JSON in {command} output: {text[:200]!r}")
    data = json.loads(text[start:])
    if require_success and not data.get("success", False):
        raise ValueError(f"{command} reported failure: {data.get('error-message', data)}")
    return data


def parse_ls_json(text: str) -> list[RunInfo]:
    """Parse the stdout of ``flwr ls --format json``."""
    data = json_reply(text, "flwr ls", require_success=True)
    return [
        RunInfo(
            run_id=str(run["run-id"]),
            status=str(run.get("status", "")),
            details=str(run.get("status-details", "")),
            pending_at=str(run.get("pending-at", "")),
            elapsed=float(run.get("elapsed") or 0.0),
        )
        for run in data.get("runs", [])
    ]


def parse_supernodes_json(text: str) -> int:
    """Number of online SuperNodes in the stdout of ``flwr supernode ls --format json``."""
    nodes = json_reply(text, "flwr supernode ls", require_success=False).get("nodes", [])
    return sum(1 for n in nodes if str(n.get("status", "online")).lower() == "online")


def find_run_id(line: str) -> str | None:
    """The run id in a ``flwr run`` output line ('Successfully started run <id>'), else None."""
    match = RUN_ID_RE.search(line)
    return match.group(1) if match else None


def flwr_json(args: Sequence[str], env: Mapping[str, str], timeout: float = 60.0) -> str:
    """Run ``flwr <args> --format json`` and return its stdout."""
    cmd = ["flwr", *args, "--format", "json"]
    try:
        res = subprocess.run(cmd, env=dict(env), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as err:
        raise FlowerError(f"{' '.join(cmd)} did not answer within {timeout:.0f}s") from err
    if res.returncode != 0:
        raise FlowerError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stdout.strip()} {res.stderr.strip()}")
    return res.stdout


def list_runs(connection: str, env: Mapping[str, str], run_id: str | None = None) -> list[RunInfo]:
    """``flwr ls`` on our connection, for one run or all."""
    args = ["ls", connection] + (["--run-id", run_id] if run_id else [])
    return parse_ls_json(flwr_json(args, env))


def count_supernodes(connection: str, env: Mapping[str, str]) -> int:
    """Number of SuperNodes the SuperLink sees online."""
    return parse_supernodes_json(flwr_json(["supernode", "ls", connection], env))


def register_supernode(connection: str, public_key: Path, env: Mapping[str, str]) -> int:
    """``flwr supernode register``: let the SuperNode holding this key's private half join; returns its node id.

    With ``flower-superlink --enable-supernode-auth`` this is the only way a SuperNode gets in.
    """
    reply = json_reply(flwr_json(["supernode", "register", str(public_key), connection], env),
                       "flwr supernode register", require_success=True)
    return int(reply["node-id"])


def final_status(connection: str, env: Mapping[str, str], run_id: str | None, timeout: float = 30.0) -> RunInfo | None:
    """Poll until the run is finished (or ``timeout``); newest run if ``run_id`` is unknown.

    Returns the last status read (possibly not final), or None if none could be read.
    """
    latest: list[RunInfo] = []  # kept across failed reads: one bad `flwr ls` must not lose the status

    def read() -> RunInfo | None:
        try:
            runs = list_runs(connection, env, run_id)
        except (FlowerError, ValueError) as err:
            print(f"[crlsc] warning: cannot read run status: {err}", file=sys.stderr)
            runs = []
        if runs:
            latest[:] = [max(runs, key=lambda r: r.pending_at) if run_id is None else runs[0]]
        return latest[0] if latest else None

    try:
        return poll_until(read, timeout=timeout, interval=STATUS_POLL_INTERVAL,
                          what=f"run {run_id or '(newest)'} to finish", done=lambda info: info is not None and info.finished)
    except PollTimeout as late:
        return late.last  # type: ignore[return-value]


@dataclass
class StreamResult:
    """Outcome of one ``flwr run --stream``."""

    returncode: int | None
    run_id: str | None
    timed_out: bool
    seconds: float
    started_seconds: float | None  # from `flwr run` to 'Successfully started run <id>'


def stream_flwr_run(
    argv: Sequence[str],
    env: Mapping[str, str],
    timeout: float | None,
    out: TextIO | None = None,
    on_run_id: Callable[[str], None] | None = None,
) -> StreamResult:
    """Run ``flwr run ... --stream``, copy its output live to ``out``, pick up the run id.

    ``flwr run`` stays in our process group, so Ctrl-C reaches it as usual. On timeout it
    is terminated (the caller then stops the SuperLink, which ends the run).
    """
    out = out or sys.stdout
    t0 = time.monotonic()
    proc = subprocess.Popen(
        list(argv), env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, errors="replace", bufsize=1,
    )
    found: dict[str, Any] = {}

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            out.flush()
            if "run_id" not in found and (rid := find_run_id(line)):
                found["run_id"] = rid
                found["started"] = time.monotonic() - t0
                if on_run_id is not None:
                    on_run_id(rid)

    reader = threading.Thread(target=pump, name="flwr-run-output", daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(timeout=5)
    return StreamResult(proc.returncode, found.get("run_id"), timed_out, time.monotonic() - t0, found.get("started"))


def shell_quote(arg: str) -> str:
    """``arg`` as shown in the echoed ``flwr run`` command line (quoted when it has spaces or is empty)."""
    return f'"{arg}"' if (" " in arg or not arg) else arg
