"""The CRLSC ServerApp: validates the scenario, maps devices, runs every topology's strategy.

Run with ``python -m crlsc_fl.launch scenarios/quick.toml`` (or ``flwr run . --run-config
scenarios/quick.toml`` with ``CRLSC_PROJECT_ROOT`` exported). Results go to
``<project root>/results/<scenario>/<run id>/``, all written by
:class:`crlsc_fl.outputs.run_dir.RunDirectory`;
``summary.json`` says ``running``, ``completed`` or ``failed`` (with the first errors). A
round with too few successful replies raises, so Flower too reports the run as failed.
With ``scenario.resume = RUN_DIR`` the run recorded there is continued
(:mod:`crlsc_fl.bookkeeping.checkpoint`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from functools import lru_cache
from logging import ERROR, INFO
from pathlib import Path

from flwr.app import Context
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from crlsc_fl import codec
from crlsc_fl.accelerator import release_cached_memory, resolve_device
from crlsc_fl.data.paths import state_root
from crlsc_fl.device.device_store import prune_previous_states, remove_topology_state
from crlsc_fl.flower.grid import ProgressGrid
from crlsc_fl.flower.stage2_phase import run_stage2
from crlsc_fl.kb.mentor import build_mentor_knowledge
from crlsc_fl.outputs.footprint import Footprint
from crlsc_fl.outputs.report import RunReport
from crlsc_fl.outputs.results import read_metrics, summarize
from crlsc_fl.outputs.run_dir import RunDirectory
from crlsc_fl.scenario.config import ScenarioConfig, from_flat
from crlsc_fl.scenario.devices import federated_data, plan_devices, sample_devices
from strategies import STRATEGIES
from strategies.context import FederationContext, MentorPayloads

NODE_WAIT_SECONDS = 300.0
# A federation whose node count has not grown for this long will not grow: plain `flwr run`
# with Flower's default 2 simulated SuperNodes, or SuperNodes that were never started.
NODE_STALL_SECONDS = 20.0

app = ServerApp()


class MissingNodesError(RuntimeError):
    """Fewer nodes than devices joined the federation; the message gives the remedy."""


def missing_nodes_message(connected: int, count: int, waited: float) -> str:
    return (
        f"only {connected} of devices.num-devices={count} nodes connected ({waited:.0f} s without a new one). "
        f"Each device is one SuperNode: with `flwr run`, pass --federation-config \"num-supernodes={count}\" "
        f"(e.g. flwr run . --run-config <scenario> --federation-config \"num-supernodes={count} client-resources-num-cpus=1\" "
        f"--stream), or run `crlsc-fl run <scenario>`, which sets it; in a deployment, start {count} SuperNodes with "
        f"--node-config \"partition-id=<0..{count - 1}> num-partitions={count}\""
    )


def wait_for_nodes(grid: Grid, count: int, timeout: float = NODE_WAIT_SECONDS, stall: float = NODE_STALL_SECONDS,
                   poll: float = 1.0) -> list[int]:
    """Wait until all ``count`` nodes are there (deployed SuperNodes join one by one). Fails
    fast, with the remedy, once no node has joined for ``stall`` seconds, and after ``timeout``."""
    start = last_change = time.monotonic()
    seen = -1
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= count:
            return nodes
        now = time.monotonic()
        if len(nodes) != seen:
            seen, last_change = len(nodes), now
        if now - last_change >= stall or now - start >= timeout:
            raise MissingNodesError(missing_nodes_message(len(nodes), count, now - last_change))
        time.sleep(poll)


def map_devices(grid: Grid, nodes: list[int], num_devices: int) -> dict[int, int]:
    """Ask every node for its partition id: device -> node id."""
    queries = [codec.handshake_query(node) for node in nodes]
    mapping: dict[int, int] = {}
    for reply in grid.send_and_receive(queries, timeout=NODE_WAIT_SECONDS):
        if reply.has_error():
            raise RuntimeError(f"node {reply.metadata.src_node_id} failed the handshake: {reply.error.reason}")
        mapping[codec.partition_of(reply)] = reply.metadata.src_node_id
    missing = sorted(set(range(num_devices)) - set(mapping))
    if missing:
        raise RuntimeError(f"no node holds partition ids {missing[:10]} (of {num_devices} devices)")
    return mapping


def make_mentor(cfg: ScenarioConfig, run_dir: RunDirectory) -> Callable[[], MentorPayloads]:
    """A builder of the server's knowledge, run once on first use (the server model's
    features and the SKB are disk-cached by content as well); its report (vectors, bytes,
    build time) goes to ``mentor.json``. The server model runs on ``devices.accelerator``."""

    @lru_cache(maxsize=1)
    def mentor() -> MentorPayloads:
        device = resolve_device(cfg.devices.accelerator)
        public = federated_data(cfg.data, cfg.devices.num_devices, cfg.scenario.seed).public_split()
        knowledge = build_mentor_knowledge(cfg.kb, public, seed=cfg.scenario.seed, device=device)
        release_cached_memory(device)  # the server model is gone; the devices share the GPU
        skb = knowledge.skb.to_bytes()
        anchors = knowledge.anchors.to_bytes() if knowledge.anchors is not None else None
        report = knowledge.report
        run_dir.write_mentor(report)
        log(INFO, "SKB %s: %d vectors of %d dims, %d bytes; %d anchors, %d bytes (%.1f s)", report["source"], report["skb_count"],
            report["dim"], len(skb), report["anchors"], report["anchor_bytes"], report["build_seconds"])
        return MentorPayloads(
            (f"skb-{hashlib.sha1(skb).hexdigest()[:12]}", skb),
            (f"anchors-{hashlib.sha1(anchors).hexdigest()[:12]}", anchors) if anchors is not None else None,
        )

    return mentor


def device_dim(cfg: ScenarioConfig) -> int:
    """The dimension of every device's projection: the SKB's (loads the server model only
    when the configuration does not tell it, i.e. open_clip without kb.dim)."""
    return cfg.kb.known_dim() or cfg.kb.build_server().dim


@app.main()
def main(grid: Grid, context: Context) -> None:
    run_start = time.time()
    cfg = from_flat(dict(context.run_config))
    resume = cfg.scenario.resume
    run_dir = RunDirectory(Path(resume)) if resume else RunDirectory.for_run(cfg, context.run_id)
    checkpoints = run_dir.checkpoints
    topologies = cfg.scenario.topologies
    if resume:  # continue the run recorded there: its device state is named by its first run id
        run_key = run_dir.recorded_run_id()
        done = checkpoints.progress(topologies)
        run_dir.trim_rounds(done)
        log(INFO, "[%s] resuming run %s in %s after %s", cfg.scenario.name, run_key, run_dir.path,
            ", ".join(f"{t} round {r}{' (complete)' if c else ''}" for t, (r, c) in done.items()) or "no completed round")
    else:
        run_key, done = str(context.run_id), {}
        run_dir.write_config(context.run_id, cfg.to_flat())
    footprint = Footprint(state_root() / run_key).start()
    report = RunReport(run_dir, run_key, context.run_id, run_start, footprint)
    report.write("running")
    log(INFO, "[%s] results: %s", cfg.scenario.name, run_dir.path)
    try:
        nodes = wait_for_nodes(grid, cfg.devices.num_devices)
        node_ids = map_devices(grid, nodes, cfg.devices.num_devices)
        devices = plan_devices(cfg.devices, cfg.scenario.seed)
        ctx = FederationContext(cfg, devices, node_ids, device_dim(cfg), run_dir, make_mentor(cfg, run_dir), run_key)
        log(INFO, "[%s] %d devices mapped in %.1f s; topologies: %s", cfg.scenario.name, len(node_ids), time.time() - run_start,
            ", ".join(topologies))
        for topology in topologies:
            last_round, complete = done.get(topology, (0, False))
            if not complete:
                run_topology(grid, ctx, topology, last_round, run_start, footprint)
                report.write("running")
                checkpoints.mark_complete(topology)
            # only now: stage 2 and a resumed run (complete topologies are skipped) need no more of it
            release_device_state(cfg, run_key, topology, footprint)
    except BaseException as err:
        try:
            footprint.stop()
            report.write("failed", err)
        except Exception as report_err:  # never hide the original error behind a reporting one
            log(ERROR, "[%s] could not write summary.json: %s", cfg.scenario.name, report_err)
        raise
    footprint.stop()
    report.write("completed")
    checkpoints.remove()
    log(INFO, "[%s] finished in %.0f s; results in %s", cfg.scenario.name, time.time() - run_start, run_dir.path)


def release_device_state(cfg: ScenarioConfig, run_key: str, topology: str, footprint: Footprint) -> None:
    """Remove a completed topology's device state unless ``scenario.keep-device-state``
    (measured first, for ``footprint.device_state_bytes``)."""
    footprint.sample_device_state()
    if not cfg.scenario.keep_device_state:
        kept = sample_devices(plan_devices(cfg.devices, cfg.scenario.seed), cfg.scenario.keep_devices, cfg.scenario.seed)
        freed = remove_topology_state(state_root(), run_key, topology, keep=kept)
        if freed:
            log(INFO, "[%s] %s: device state removed (%.1f MB)%s", cfg.scenario.name, topology, freed / 1e6,
                f"; encoders of devices {kept} kept" if kept else "")


def run_topology(
    grid: Grid, ctx: FederationContext, topology: str, last_round: int, run_start: float, footprint: Footprint | None = None,
) -> None:
    """Rounds ``last_round + 1 ..`` of one topology (resuming from its checkpoint), then stage 2."""
    cfg = ctx.cfg
    strategy = STRATEGIES.get(topology)(ctx)
    if last_round:
        saved = ctx.run_dir.checkpoints.load(topology)
        assert saved is not None, f"{topology}: resumed after round {last_round} without its checkpoint"
        strategy.load_state_dict(saved["state"], last_round)
    progress = ProgressGrid(
        grid, f"{cfg.scenario.name}/{topology}", cfg.scenario.rounds, run_start, ctx.run_dir,
        max_in_flight=cfg.scenario.max_in_flight, on_reply=strategy.on_reply, first_round=last_round,
        on_round_end=footprint.sample_device_state if footprint else None,
    )
    strategy.start(grid=progress, initial_arrays=codec.no_arrays(), num_rounds=cfg.scenario.rounds - last_round,
                   timeout=cfg.scenario.reply_timeout)
    run_stage2(grid, cfg, topology, ctx.node_ids, {d.device: d.arch for d in ctx.devices}, ctx.run_dir, ctx.run_key)
    prune_previous_states(state_root(), ctx.run_key, topology)  # every round of it is committed now
    done = summarize(read_metrics(ctx.run_dir.path)).get(topology, {})
    if "knn_top1" in done:
        log(INFO, "[%s] %s done: kNN top-1 %.1f +- %.1f %%, %.0f bytes per device", cfg.scenario.name, topology,
            done["knn_top1"]["mean"], done["knn_top1"]["std"], done["bytes_per_device"]["mean"])
