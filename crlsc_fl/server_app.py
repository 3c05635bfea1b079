"""The CRLSC ServerApp: validates the scenario, maps devices, runs every topology's strategy.

Run with ``python -m crlsc_fl.launch scenarios/quick.toml`` (or ``flwr run . --run-config
scenarios/quick.toml`` with ``CRLSC_PROJECT_ROOT`` exported). Results go to
``<project root>/results/<scenario>/<run id>/`` (see :mod:`crlsc_fl.federation.results`).
"""

from __future__ import annotations

import hashlib
import time
from functools import lru_cache
from logging import INFO

from flwr.app import ArrayRecord, Context, Message, MessageType, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from crlsc_fl.config import ScenarioConfig, from_flat
from crlsc_fl.federation.devices import federated_data, plan_devices
from crlsc_fl.federation.plots import plot_runs
from crlsc_fl.federation.progress import ProgressGrid
from crlsc_fl.federation.results import RunWriter, read_metrics, run_directory, summarize, summarize_stage2
from crlsc_fl.federation.stage2_phase import run_stage2
from crlsc_fl.kb.builders import build_image_kb, build_text_kb
from crlsc_fl.kb.knowledge_base import KBConfig
from crlsc_fl.models.server_models import ServerEncoder, build_server_model
from strategies import STRATEGIES
from strategies.base import FederationContext

NODE_WAIT_SECONDS = 300.0

app = ServerApp()


def wait_for_nodes(grid: Grid, count: int, timeout: float = NODE_WAIT_SECONDS) -> list[int]:
    """Flower registers simulated nodes gradually: wait until all ``count`` are there."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= count:
            return nodes
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(nodes)} of devices.num-devices={count} nodes connected within {timeout:.0f} s")
        time.sleep(1.0)


def map_devices(grid: Grid, nodes: list[int], num_devices: int) -> dict[int, int]:
    """Ask every node for its partition id: device -> node id."""
    queries = [Message(content=RecordDict(), dst_node_id=node, message_type=MessageType.QUERY) for node in nodes]
    mapping: dict[int, int] = {}
    for reply in grid.send_and_receive(queries, timeout=NODE_WAIT_SECONDS):
        if reply.has_error():
            raise RuntimeError(f"node {reply.metadata.src_node_id} failed the handshake: {reply.error.reason}")
        device = int(reply.content.config_records["node"]["partition-id"])
        mapping[device] = reply.metadata.src_node_id
    missing = sorted(set(range(num_devices)) - set(mapping))
    if missing:
        raise RuntimeError(f"no node holds partition ids {missing[:10]} (of {num_devices} devices)")
    return mapping


def make_shared_kb(cfg: ScenarioConfig, server: ServerEncoder):  # type: ignore[no-untyped-def]
    """A cached builder of the SKB (disk-cached by content key as well)."""

    @lru_cache(maxsize=1)
    def shared_kb() -> tuple[str, bytes]:
        k = cfg.kb
        config = KBConfig(k.index, k.m, k.nbits)
        start = time.time()
        if k.source == "text":
            kb = build_text_kb(server, k.class_names, k.templates, config)
        else:
            kb = build_image_kb(server, federated_data(cfg).public_images(), f"{cfg.data.dataset}-public", config)
        blob = kb.to_bytes()
        log(INFO, "SKB %s: %d vectors, %d bytes (%.1f s)", kb.metadata.source, kb.count, len(blob), time.time() - start)
        return f"skb-{hashlib.sha1(blob).hexdigest()[:12]}", blob

    return shared_kb


def build_server(cfg: ScenarioConfig) -> ServerEncoder:
    if cfg.kb.server_model == "open_clip":
        return build_server_model("open_clip", model_name=cfg.kb.open_clip_model, pretrained=cfg.kb.pretrained or None)
    return build_server_model(cfg.kb.server_model)


@app.main()
def main(grid: Grid, context: Context) -> None:
    run_start = time.time()
    cfg = from_flat(dict(context.run_config))
    writer = RunWriter(run_directory(cfg, context.run_id))
    writer.write_json("config.json", {"run_id": context.run_id, "scenario": cfg.to_flat()})
    log(INFO, "[%s] results: %s", cfg.scenario.name, writer.run_dir)

    nodes = wait_for_nodes(grid, cfg.devices.num_devices)
    node_ids = map_devices(grid, nodes, cfg.devices.num_devices)
    devices = plan_devices(cfg)
    server = build_server(cfg)
    ctx = FederationContext(cfg, devices, node_ids, server.dim, writer, make_shared_kb(cfg, server))
    log(INFO, "[%s] %d devices mapped in %.1f s; topologies: %s", cfg.scenario.name, len(node_ids), time.time() - run_start,
        ", ".join(cfg.scenario.topology_list))

    for topology in cfg.scenario.topology_list:
        strategy = STRATEGIES.get(topology)(ctx)
        progress = ProgressGrid(
            grid, f"{cfg.scenario.name}/{topology}", cfg.scenario.rounds, run_start, writer,
            max_in_flight=cfg.scenario.max_in_flight, on_reply=strategy.on_reply,
        )
        strategy.start(grid=progress, initial_arrays=ArrayRecord(), num_rounds=cfg.scenario.rounds, timeout=3600.0)  # type: ignore[arg-type]
        stage2_rows = run_stage2(grid, cfg, topology, node_ids, {d.device: d.arch for d in devices}, writer)
        rows = read_metrics(writer.run_dir)
        summary = summarize(rows)
        payload = {"run_id": context.run_id, "elapsed_seconds": time.time() - run_start, "topologies": summary}
        if stage2_rows:
            payload["stage2"] = summarize_stage2(read_metrics(writer.run_dir, "stage2.jsonl"))
        writer.write_json("summary.json", payload)
        plot_runs({"": rows}, writer.run_dir, payload.get("stage2"))
        done = summary.get(topology, {})
        if "knn_top1" in done:
            log(INFO, "[%s] %s done: kNN top-1 %.1f +- %.1f %%, %.0f bytes per device", cfg.scenario.name, topology,
                done["knn_top1"]["mean"], done["knn_top1"]["std"], done["bytes_per_device"]["mean"])
    log(INFO, "[%s] finished in %.0f s; results in %s", cfg.scenario.name, time.time() - run_start, writer.run_dir)
