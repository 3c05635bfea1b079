"""Shared helpers to drive Flower 1.42 from Python: SuperLink/SuperNode processes, `flwr run`, run status.

Used by :mod:`crlsc_fl.launch` (simulation) and :mod:`crlsc_fl.deploy` (deployment on loopback).

Design (measured with flwr 1.42.0, see /work/shared/notes/flower-1.42.md):

* Every invocation gets its own Flower home, ``<repo>/.flwr/<mode>-<stamp>-<pid>/``
  (``FLWR_HOME``), holding ``config.toml`` (one ``[superlink.<name>]`` connection with an
  explicit loopback address), the SuperLink database ``state.db``, one log file per started
  process and the installed app (``apps/``, removed at the end). ``<repo>/.flwr/`` is
  excluded from FABs by Flower itself and ignores itself for git (``.flwr/.gitignore`` = ``*``).
  Parallel invocations (a test beside a long run) never share ports, state or config.
* We start the SuperLink ourselves (``flower-superlink --simulation`` for simulation) on a
  free port instead of relying on the ``:local:`` connection: ``:local:`` always uses port
  39091 and silently reuses *any* SuperLink already listening there (another user's), and it
  leaves its SuperLink running.
* Each started process is a session leader (``start_new_session``); :class:`Supervisor`
  remembers every descendant and every session a descendant creates (the SuperLink starts
  ``flower-superexec`` in a new session, which starts ``flwr-simulation`` and Ray), so that
  :meth:`Supervisor.stop` can end exactly what we caused. This matters: SIGTERM to the
  SuperLink alone leaves ``flwr-simulation`` running ~20 s and Ray's ``DashboardAgent`` /
  ``RuntimeEnvAgent`` orphaned for good (they ignore SIGTERM).
* ``flwr run --stream`` exits 0 even when the ServerApp crashed: the real status comes from
  ``flwr ls --run-id <id> --format json`` (``finished:completed|failed|stopped``).

Linux only (reads ``/proc``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TextIO

import tomli_w

RUN_ID_RE = re.compile(r"Successfully started run (\d+)")
STATUS_COMPLETED = "finished:completed"
# Exit codes shared by the launcher and the deployment runner.
EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_CONFIG = 2
EXIT_INFRA = 3
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130


class FlowerError(RuntimeError):
    """Flower infrastructure could not be started or queried; the message says what and where."""


# --------------------------------------------------------------------------- paths and env


def project_root() -> Path:
    """Absolute path of this repository (the Flower app root holding pyproject.toml)."""
    return Path(__file__).resolve().parent.parent


def make_flwr_home(root: Path, mode: str) -> Path:
    """Create a fresh per-invocation FLWR_HOME ``<root>/.flwr/<mode>-<stamp>-<pid>``."""
    base = root / ".flwr"
    base.mkdir(parents=True, exist_ok=True)
    ignore = base / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# written by crlsc_fl.flwr_cli: per-run Flower homes, never committed\n*\n")
    stem = f"{mode}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    for i in range(100):
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
        CRLSC_PROJECT_ROOT=str(project),
        PYTHONUNBUFFERED="1",
    )
    env.pop("RAY_ADDRESS", None)  # never join somebody else's Ray cluster
    # Make sure the Flower executables of *this* interpreter are found first.
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_connection(home: Path, name: str, address: str) -> Path:
    """Write ``$FLWR_HOME/config.toml`` with one insecure SuperLink connection as default."""
    path = home / "config.toml"
    path.write_text(tomli_w.dumps({"superlink": {"default": name, name: {"address": address, "insecure": True}}}))
    return path


# --------------------------------------------------------------------------- run config


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are TOML literals (``3``, ``0.5``, ``true``, ``'s'``) or bare strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key=value")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        out[key] = value
    return out


def merged_run_config(scenario: Path, overrides: Mapping[str, Any], dest: Path) -> Path:
    """Return a TOML file for ``flwr run --run-config``: the scenario itself, or a merged copy.

    ``--run-config`` takes ONE toml path or key=value pairs, never both, so overrides
    (dotted keys such as ``scenario.rounds``) are written into a copy of the scenario.
    """
    scenario = scenario.resolve()
    if not overrides:
        return scenario
    table = tomllib.loads(scenario.read_text())
    for dotted, value in overrides.items():
        node = table
        *parents, leaf = dotted.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"override {dotted!r}: {part!r} is a value, not a table, in {scenario}")
            node = child
        node[leaf] = value
    dest.write_text(f"# {scenario} with overrides {dict(overrides)}\n" + tomli_w.dumps(table))
    return dest


def federation_config(defaults: Mapping[str, Any], extra: str | None) -> str:
    """Merge ``--federation-config`` pairs: ``extra`` (``"k=v k2=v2"``) wins over ``defaults``."""
    merged = {k: str(v) for k, v in defaults.items()}
    for item in (extra or "").split():
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--federation-config item {item!r} is not of the form key=value")
        merged[key] = value
    return " ".join(f"{k}={v}" for k, v in merged.items())


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` we need."""

    pid: int
    state: str
    ppid: int
    sid: int
    start: int  # clock ticks since boot; (pid, start) identifies a process across pid reuse


def read_stat(pid: int) -> ProcStat | None:
    """Parse ``/proc/<pid>/stat``; None if the process is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2 :].split()  # the command name may hold spaces and ')'
    return ProcStat(pid, rest[0], int(rest[1]), int(rest[3]), int(rest[19]))


def process_table() -> dict[int, ProcStat]:
    """Every process visible in /proc."""
    table: dict[int, ProcStat] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                table[stat.pid] = stat
    return table


def cmdline(pid: int) -> str:
    """The command line of a process, or '' if it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@dataclass
class Supervisor:
    """Starts processes as session leaders and stops them and everything they caused.

    Ownership rule: a process is ours if we started it, if its parent is ours, or if it lives
    in a session whose leader was ours and it started after this Supervisor was created.
    A background thread re-scans /proc every ``scan_interval`` seconds so that processes are
    remembered before their parents die and they get re-parented to init.
    """

    log_dir: Path
    scan_interval: float = 1.0
    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    tracked: dict[int, int] = field(default_factory=dict)  # pid -> start ticks
    sessions: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _t0: int = 0

    def __post_init__(self) -> None:
        own = read_stat(os.getpid())
        self._t0 = own.start if own else 0

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        """Start ``argv`` in its own session, output to ``<log_dir>/<name>.log``."""
        log = (self.log_dir / f"{name}.log").open("ab")
        try:
            proc = subprocess.Popen(
                list(argv), env=dict(env), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.log_dir,
            )
        except OSError as err:
            raise FlowerError(f"cannot start {name} ({argv[0]}): {err}") from err
        finally:
            log.close()
        stat = read_stat(proc.pid)
        with self._lock:
            self.started.append((name, proc))
            self.tracked[proc.pid] = stat.start if stat else 0
            self.sessions.add(proc.pid)
        if self._thread is None:
            self._thread = threading.Thread(target=self._scan_loop, name="flwr-supervisor", daemon=True)
            self._thread.start()
        return proc

    def log_path(self, name: str) -> Path:
        """Where the output of the process started as ``name`` goes."""
        return self.log_dir / f"{name}.log"

    def _scan_loop(self) -> None:
        while not self._stop.wait(self.scan_interval):
            self.scan()

    def scan(self) -> None:
        """Add every current descendant / same-session process of ours to :attr:`tracked`."""
        table = process_table()
        with self._lock:
            changed = True
            while changed:
                changed = False
                for stat in table.values():
                    if self.tracked.get(stat.pid) == stat.start:
                        if stat.sid == stat.pid and stat.pid not in self.sessions:
                            self.sessions.add(stat.pid)
                            changed = True
                        continue
                    parent = table.get(stat.ppid)
                    by_parent = parent is not None and self.tracked.get(parent.pid) == parent.start
                    by_session = stat.sid in self.sessions and stat.start >= self._t0
                    if by_parent or by_session:
                        self.tracked[stat.pid] = stat.start
                        changed = True

    def alive(self) -> list[int]:
        """Tracked processes still running (zombies count as gone)."""
        with self._lock:
            items = list(self.tracked.items())
        out = []
        for pid, start in items:
            stat = read_stat(pid)
            if stat is not None and stat.start == start and stat.state not in ("Z", "X"):
                out.append(pid)
        return out

    def _signal(self, pids: Sequence[int], sig: int) -> None:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def _wait_gone(self, pids: Sequence[int], timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        while True:
            self.scan()
            self._reap()
            left = [p for p in self.alive() if p in set(pids)]
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.2)

    def _reap(self) -> None:
        for _, proc in self.started:
            proc.poll()

    def stop(self, grace: float = 10.0) -> list[int]:
        """Stop everything we caused; return pids that survived SIGKILL (should be empty).

        Order: SIGTERM the started processes (newest first, e.g. SuperNodes before the
        SuperLink) so they shut down their children cleanly; then SIGTERM and finally SIGKILL
        whatever tracked process is left (Ray agents ignore SIGTERM).
        """
        self.scan()
        roots = [proc.pid for _, proc in reversed(self.started) if proc.poll() is None]
        self._signal(roots, signal.SIGTERM)
        self._wait_gone(roots, grace)
        rest = self.alive()
        if rest:
            self._signal(rest, signal.SIGTERM)
            rest = self._wait_gone(rest, 3.0)
        if rest:
            self._signal(rest, signal.SIGKILL)
            rest = self._wait_gone(rest, 3.0)
        self._stop.set()
        for _, proc in self.started:
            try:
                proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        return rest

    def all_pids(self) -> list[int]:
        """Every pid ever tracked (for tests: all must be gone after :meth:`stop`)."""
        with self._lock:
            return sorted(self.tracked)


def wait_health(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> float:
    """Wait until the SuperLink on ``port`` answers ``/health``; return seconds waited."""
    t0 = time.monotonic()
    url = f"http://127.0.0.1:{port}/health"
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise FlowerError(f"flower-superlink exited with code {proc.returncode}; see {log}:\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=0.5) as resp:
                if resp.status == 200:
                    return time.monotonic() - t0
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise FlowerError(f"flower-superlink did not answer {url} within {timeout:.0f}s; see {log}:\n{tail(log)}")


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file ('' if missing)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------- flwr CLI


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


def parse_ls_json(text: str) -> list[RunInfo]:
    """Parse the stdout of ``flwr ls --format json`` (also tolerates text before the JSON)."""
    start = text.find("{")
    if start < 0:
        raise ValueError(f"no JSON in flwr ls output: {text[:200]!r}")
    data = json.loads(text[start:])
    if not data.get("success", False):
        raise ValueError(f"flwr ls reported failure: {data.get('error-message', data)}")
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


def final_status(connection: str, env: Mapping[str, str], run_id: str | None, timeout: float = 30.0) -> RunInfo | None:
    """Poll until the run is finished (or ``timeout``); newest run if ``run_id`` is unknown."""
    deadline = time.monotonic() + timeout
    info: RunInfo | None = None
    while True:
        try:
            runs = list_runs(connection, env, run_id)
        except (FlowerError, ValueError) as err:
            print(f"[crlsc] warning: cannot read run status: {err}", file=sys.stderr)
            runs = []
        if runs:
            info = max(runs, key=lambda r: r.pending_at) if run_id is None else runs[0]
            if info.finished:
                return info
        if time.monotonic() >= deadline:
            return info
        time.sleep(1.0)


def count_supernodes(connection: str, env: Mapping[str, str]) -> int:
    """Number of SuperNodes the SuperLink sees online (``flwr supernode ls --format json``)."""
    text = flwr_json(["supernode", "ls", connection], env)
    data = json.loads(text[text.find("{"):])
    nodes = data.get("nodes", [])
    return sum(1 for n in nodes if str(n.get("status", "online")).lower() == "online")


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


# --------------------------------------------------------------------------- one invocation


@dataclass
class FlowerSession:
    """One SuperLink (+ optional SuperNodes) with its own FLWR_HOME; use as a context manager.

    >>> with FlowerSession(project_root(), mode="sim", simulation=True) as fs:   # doctest: +SKIP
    ...     outcome = fs.run(app, run_config, ["--federation-config", "num-supernodes=3"], timeout=600)
    """

    project: Path
    mode: str
    simulation: bool
    connection: str = "crlsc"
    home: Path = field(init=False)
    env: dict[str, str] = field(init=False)
    supervisor: Supervisor = field(init=False)
    port: int = 0
    run_id: str | None = None  # set as soon as `flwr run` reports it (also if interrupted later)
    leftovers: list[int] = field(default_factory=list)
    startup_seconds: float = 0.0  # SuperLink start until /health answers
    supernodes_seconds: float = 0.0  # SuperNodes start until all are online
    shutdown_seconds: float = 0.0  # close(): until every process is gone

    def __post_init__(self) -> None:
        self.home = make_flwr_home(self.project, self.mode)
        self.env = flwr_env(self.home, self.project)
        self.supervisor = Supervisor(self.home)

    def __enter__(self) -> "FlowerSession":
        try:
            self.start_superlink()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start_superlink(self, attempts: int = 3) -> None:
        """Start ``flower-superlink`` on a free loopback port and point our connection at it."""
        for attempt in range(attempts):
            self.port = free_port()
            argv = [
                "flower-superlink", "--insecure", "--isolation", "subprocess", "--host", "127.0.0.1",
                "--port", str(self.port), "--database", str(self.home / "state.db"),
                "--disable-runtime-dependency-installation",
            ] + (["--simulation"] if self.simulation else [])
            name = "superlink" if attempt == 0 else f"superlink-{attempt}"
            proc = self.supervisor.start(name, argv, self.env)
            try:
                self.startup_seconds = wait_health(self.port, proc, self.supervisor.log_path(name))
                break
            except FlowerError:
                if attempt == attempts - 1 or "address already in use" not in tail(self.supervisor.log_path(name)).lower():
                    raise
        write_connection(self.home, self.connection, f"127.0.0.1:{self.port}")

    def start_supernodes(self, n: int, wait: float = 60.0) -> None:
        """Start ``n`` SuperNodes (partition-id i of n) and wait until the SuperLink sees all."""
        for i in range(n):
            argv = [
                "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{self.port}",
                "--host", "127.0.0.1", "--port", str(free_port()),
                "--node-config", f"partition-id={i} num-partitions={n}",
            ]
            self.supervisor.start(f"supernode-{i}", argv, self.env)
        t0 = time.monotonic()
        deadline = t0 + wait
        seen = 0
        while time.monotonic() < deadline:
            for name, proc in self.supervisor.started:
                if proc.poll() is not None:
                    log = self.supervisor.log_path(name)
                    raise FlowerError(f"{name} exited with code {proc.returncode}; see {log}:\n{tail(log)}")
            try:
                seen = count_supernodes(self.connection, self.env)
            except (FlowerError, ValueError):
                seen = 0
            if seen >= n:
                self.supernodes_seconds = time.monotonic() - t0
                return
            time.sleep(0.5)
        raise FlowerError(f"only {seen} of {n} SuperNodes connected within {wait:.0f}s; logs in {self.home}")

    def run(self, app: Path, run_config: Path, extra: Sequence[str] = (), timeout: float | None = None) -> "Outcome":
        """``flwr run <app> <connection> --run-config <file> <extra> --stream``, then the real status."""
        argv = ["flwr", "run", str(app), self.connection, "--run-config", str(run_config), *extra, "--stream"]
        print(f"[crlsc] $ {' '.join(_quote(a) for a in argv)}", flush=True)
        stream = stream_flwr_run(argv, self.env, timeout, on_run_id=lambda rid: setattr(self, "run_id", rid))
        if stream.run_id is None and not stream.timed_out:
            return Outcome(stream=stream, info=None)  # `flwr run` refused (bad app/config): nothing to poll
        info = final_status(self.connection, self.env, stream.run_id, timeout=5.0 if stream.timed_out else 30.0)
        return Outcome(stream=stream, info=info)

    def close(self) -> None:
        """Stop every process we caused; remove the installed app copy; keep logs and state.db."""
        t0 = time.monotonic()
        with deferred_signals():  # a second Ctrl-C must not abort the cleanup half-way
            self.leftovers = self.supervisor.stop()
        self.shutdown_seconds = time.monotonic() - t0
        shutil.rmtree(self.home / "apps", ignore_errors=True)
        if self.leftovers:
            desc = "; ".join(f"{p}: {cmdline(p)[:100]}" for p in self.leftovers)
            print(f"[crlsc] WARNING: processes survived SIGKILL: {desc}", file=sys.stderr)


@dataclass
class Outcome:
    """What happened to one ``flwr run``."""

    stream: StreamResult
    info: RunInfo | None

    @property
    def run_id(self) -> str | None:
        """The run id (from the output, else from ``flwr ls``)."""
        return self.stream.run_id or (self.info.run_id if self.info else None)

    @property
    def status(self) -> str:
        """Final Flower status, or ``timeout`` / ``unknown``."""
        if self.stream.timed_out:
            return "timeout"
        if self.info is None and self.stream.run_id is None:
            return f"not started (flwr run exited {self.stream.returncode})"
        return self.info.status if self.info else "unknown"

    @property
    def exit_code(self) -> int:
        """0 only if Flower reports ``finished:completed``."""
        if self.stream.timed_out:
            return EXIT_TIMEOUT
        return EXIT_OK if self.info is not None and self.info.succeeded else EXIT_RUN_FAILED


def results_dir(project: Path, results_root: str, scenario_name: str, run_id: str | None) -> Path | None:
    """``<project>/<results-root>/<scenario>/<run-id>`` if it exists, else any ``*/<run-id>`` there."""
    if run_id is None:
        return None
    base = Path(results_root) if Path(results_root).is_absolute() else project / results_root
    expected = base / scenario_name / run_id
    if expected.is_dir():
        return expected
    hits = sorted(base.glob(f"*/{run_id}")) if base.is_dir() else []
    return hits[0] if hits else None


def final_line(
    outcome: Outcome | None, results: Path | None, home: Path, error: str | None = None, run_id: str | None = None
) -> str:
    """The one summary line both commands print last."""
    rid = (outcome.run_id if outcome else None) or run_id
    status = error or (outcome.status if outcome else "not started")
    details = ""
    if outcome and outcome.info and outcome.info.details not in ("", "N/A"):
        details = f" ({outcome.info.details})"
    where = str(results) if results else "no results directory"
    return f"[crlsc] run {rid or '?'}: {status}{details}; results: {where}; flower logs: {home}"


@dataclass
class SignalGuard:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt so ``finally`` blocks stop our processes."""

    previous: dict[int, Any] = field(default_factory=dict)

    def __enter__(self) -> "SignalGuard":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):
                self.previous[sig] = signal.signal(sig, self._raise)
        return self

    @staticmethod
    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Record SIGINT/SIGTERM/SIGHUP during the block; raise KeyboardInterrupt after it if any came.

    (Blocking with ``pthread_sigmask`` is not enough: the kernel would hand the signal to
    another thread and Python would still raise in the main thread.) No-op outside the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise KeyboardInterrupt(f"signal {received[0]} during cleanup")


def _quote(arg: str) -> str:
    return f'"{arg}"' if (" " in arg or not arg) else arg
