"""One Flower session and one run on it: :class:`FlowerSession` (a SuperLink, optional
SuperNodes, its own Flower home) and :func:`execute` (a validated :class:`RunPlan`: start
Flower, ``flwr run``, read the real status, stop everything, print the final line, report the
summary and the device state). The same for a simulation (``crlsc-fl run``) and a loopback
deployment (``crlsc-fl deploy``); what differs is in the plan (see
:class:`crlsc_fl.launcher.cli.Federation`).

With :class:`~crlsc_fl.security.credentials.Credentials` (``crlsc-fl deploy``'s default) the
SuperLink serves its one port (Fleet, Control and Runtime APIs) over TLS with our CA's
certificate and ``--enable-supernode-auth``; every SuperNode's public key is registered
(``flwr supernode register``) before the SuperNode starts with its private key and the CA
certificate; the ``flwr`` CLI trusts the CA through ``root-certificates`` in ``config.toml``.
Without credentials (the simulation, ``crlsc-fl deploy --insecure``) all of it is plaintext.

We start the SuperLink ourselves (``flower-superlink --simulation`` for simulation) on a
free port instead of relying on the ``:local:`` connection: ``:local:`` always uses port
39091 and silently reuses *any* SuperLink already listening there (another user's), and it
leaves its SuperLink running. Measured with flwr 1.42.0 (see /work/shared/notes/flower-1.42.md).
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from crlsc_fl import environment
from crlsc_fl.environment import MEMORY_ROOT_ENV, STATE_DIR_ENV
from crlsc_fl.launcher.flower_cli import (
    count_supernodes,
    final_status,
    flwr_env,
    free_port,
    make_flwr_home,
    register_supernode,
    shell_quote,
    stream_flwr_run,
    write_connection,
)
from crlsc_fl.launcher.processes import FlowerError, PollTimeout, SignalGuard, Supervisor, deferred_signals, describe, poll_until, tail
from crlsc_fl.launcher.ray_cluster import RayTarget, driver_env, worker_env
from crlsc_fl.launcher.report import ExitCode, Outcome, device_state_root, final_line, report_run, results_dir
from crlsc_fl.security.credentials import Credentials, Security
from crlsc_fl.security.keys import make_keys

HEALTH_TIMEOUT = 30.0  # seconds for a fresh SuperLink to answer /health
HEALTH_INTERVAL = 0.2
SUPERNODES_INTERVAL = 0.5  # seconds between `flwr supernode ls` calls
STATUS_TIMEOUT = 30.0  # seconds for `flwr ls` to report a final status after `flwr run` returned
STATUS_TIMEOUT_AFTER_TIMEOUT = 5.0  # ... after we stopped `flwr run` on --timeout


def answers_health(url: str, context: ssl.SSLContext | None = None) -> bool:
    """True if ``url`` answers HTTP 200 within half a second (``https`` URLs: verified with ``context``)."""
    try:
        with urllib.request.urlopen(url, timeout=0.5, context=context) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def health_url(port: int, ca_cert: Path | None) -> tuple[str, ssl.SSLContext | None]:
    """The SuperLink's ``/health`` URL and the TLS context trusting only ``ca_cert`` (plaintext without)."""
    if ca_cert is None:
        return f"http://127.0.0.1:{port}/health", None
    return f"https://127.0.0.1:{port}/health", ssl.create_default_context(cafile=str(ca_cert))


def exit_error(name: str, proc: psutil.Popen, log: Path) -> FlowerError:
    """The error for a Flower process that exited although we wait for it, with its log's tail."""
    return FlowerError(f"{name} exited with code {proc.returncode}; see {log}:\n{tail(log)}")


def wait_health(port: int, proc: psutil.Popen, log: Path, timeout: float = HEALTH_TIMEOUT, ca_cert: Path | None = None) -> float:
    """Wait until the SuperLink on ``port`` answers ``/health`` (over TLS if ``ca_cert``); return seconds waited."""
    t0 = time.monotonic()
    url, context = health_url(port, ca_cert)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise exit_error("flower-superlink", proc, log)
        return answers_health(url, context)

    try:
        poll_until(healthy, timeout=timeout, interval=HEALTH_INTERVAL, what=f"flower-superlink to answer {url}")
    except PollTimeout as late:
        raise FlowerError(f"flower-superlink did not answer {url} within {timeout:.0f}s; see {log}:\n{tail(log)}") from late
    return time.monotonic() - t0


@dataclass
class FlowerSession:
    """One SuperLink (+ optional SuperNodes) with its own FLWR_HOME; use as a context manager.

    >>> with FlowerSession(checkout_root(), mode="sim", simulation=True) as fs:   # doctest: +SKIP
    ...     outcome = fs.run(app, run_config, ["--federation-config", "num-supernodes=3"], timeout=600)
    """

    project: Path
    mode: str
    simulation: bool
    connection: str = "crlsc"
    credentials: Credentials | None = None  # TLS + SuperNode authentication; None: plaintext
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

    def __enter__(self) -> FlowerSession:
        try:
            self.start_superlink()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start_superlink(self, attempts: int = 3) -> None:
        """Start ``flower-superlink`` on a free loopback port and point our connection at it.

        A port that was free a moment ago can be taken before the SuperLink binds it: then
        (and only then) another port is tried.
        """
        for attempt in range(attempts):
            self.port = free_port()
            argv = [
                "flower-superlink", *self.superlink_security(), "--isolation", "subprocess", "--host", "127.0.0.1",
                "--port", str(self.port), "--database", str(self.home / "state.db"),
                "--disable-runtime-dependency-installation",
            ] + (["--simulation"] if self.simulation else [])
            name = "superlink" if attempt == 0 else f"superlink-{attempt}"
            proc = self.supervisor.start(name, argv, self.env)
            try:
                self.startup_seconds = wait_health(self.port, proc, self.supervisor.log_path(name), ca_cert=self.ca_cert)
                break
            except FlowerError:
                if attempt == attempts - 1 or "address already in use" not in tail(self.supervisor.log_path(name)).lower():
                    raise
        write_connection(self.home, self.connection, f"127.0.0.1:{self.port}", root_certificates=self.ca_cert)

    @property
    def ca_cert(self) -> Path | None:
        """The CA certificate every client of this SuperLink trusts (None: plaintext)."""
        return self.credentials.ca_cert if self.credentials else None

    def superlink_security(self) -> list[str]:
        """TLS and SuperNode-authentication options of ``flower-superlink``, or ``--insecure``."""
        if self.credentials is None:
            return ["--insecure"]
        return self.credentials.superlink_args(supernode_auth=not self.simulation)

    def supernode_security(self, index: int) -> list[str]:
        """Register SuperNode ``index``'s public key (TLS deployments); its ``flower-supernode`` security options."""
        if self.credentials is None:
            return ["--insecure"]
        if index >= len(self.credentials.nodes):
            raise FlowerError(f"no key for SuperNode {index}: {self.credentials.directory} has {len(self.credentials.nodes)} checked")
        try:
            register_supernode(self.connection, self.credentials.nodes[index].public_key, self.env)
        except ValueError as err:
            raise FlowerError(f"cannot register SuperNode {index}'s key: {err}") from err
        return self.credentials.supernode_args(index)

    def supernode_argv(self, index: int, n: int, security: Sequence[str]) -> list[str]:
        """``flower-supernode`` for device ``index`` of ``n``, with its ClientApp runtime API on a free loopback port."""
        return [
            "flower-supernode", *security, "--superlink", f"127.0.0.1:{self.port}",
            "--host", "127.0.0.1", "--port", str(free_port()),
            "--node-config", f"partition-id={index} num-partitions={n}",
        ]

    def start_supernodes(self, n: int, wait: float = 60.0) -> None:
        """Start ``n`` SuperNodes (partition-id i of n; with credentials, each registered first) and
        wait until the SuperLink sees all."""
        for i in range(n):
            self.supervisor.start(f"supernode-{i}", self.supernode_argv(i, n, self.supernode_security(i)), self.env)
        t0 = time.monotonic()

        def online() -> int:
            exited = self.supervisor.exited()
            if exited is not None:
                name, proc = exited
                raise exit_error(name, proc, self.supervisor.log_path(name))
            try:
                return count_supernodes(self.connection, self.env)
            except (FlowerError, ValueError):  # the SuperLink may not list nodes yet
                return 0

        try:
            poll_until(online, timeout=wait, interval=SUPERNODES_INTERVAL, what=f"{n} SuperNodes to connect",
                       done=lambda seen: seen >= n)
        except PollTimeout as late:
            raise FlowerError(f"only {late.last} of {n} SuperNodes connected within {wait:.0f}s; logs in {self.home}") from None
        self.supernodes_seconds = time.monotonic() - t0

    def run(self, app: Path, run_config: Path, extra: Sequence[str] = (), timeout: float | None = None) -> Outcome:
        """``flwr run <app> <connection> --run-config <file> <extra> --stream``, then the real status."""
        argv = ["flwr", "run", str(app), self.connection, "--run-config", str(run_config), *extra, "--stream"]
        print(f"[crlsc] $ {' '.join(shell_quote(a) for a in argv)}", flush=True)
        stream = stream_flwr_run(argv, self.env, timeout, on_run_id=lambda rid: setattr(self, "run_id", rid))
        if stream.run_id is None and not stream.timed_out:
            return Outcome(stream=stream, info=None)  # `flwr run` refused (bad app/config): nothing to poll
        status_timeout = STATUS_TIMEOUT_AFTER_TIMEOUT if stream.timed_out else STATUS_TIMEOUT
        return Outcome(stream=stream, info=final_status(self.connection, self.env, stream.run_id, timeout=status_timeout))

    def close(self) -> None:
        """Stop every process we caused; remove the installed app copy; keep logs and state.db."""
        t0 = time.monotonic()
        with deferred_signals():  # a second Ctrl-C must not abort the cleanup half-way
            self.leftovers = self.supervisor.stop()
        self.shutdown_seconds = time.monotonic() - t0
        shutil.rmtree(self.home / "apps", ignore_errors=True)
        if self.leftovers:
            desc = "; ".join(describe(self.supervisor.tracked[pid]) for pid in self.leftovers)
            print(f"[crlsc] WARNING: processes survived SIGKILL: {desc}", file=sys.stderr)


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
    return int(report_run(results, code, status, device_state_root({**environment.current(), **plan.env}), run_key))
