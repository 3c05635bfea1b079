"""Shared fixtures: a strategy context without Flower or training (no messages are sent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crlsc_fl.outputs.run_dir import RunDirectory
from crlsc_fl.scenario.config import from_flat
from crlsc_fl.scenario.devices import plan_devices
from strategies.context import FederationContext, MentorPayloads

SKB_BLOB = b"S" * 1000
ANCHOR_BLOB = b"A" * 3000


@pytest.fixture
def make_context(tmp_path: Path):  # type: ignore[no-untyped-def]
    def build(**overrides: object) -> FederationContext:
        values = {"devices.num-devices": 12, "topology.edges": 3, "data.dataset": "synthetic", **overrides}
        cfg = from_flat(values)
        devices = plan_devices(cfg.devices, cfg.scenario.seed)
        return FederationContext(
            cfg, devices, {d.device: 1000 + d.device for d in devices}, 384, RunDirectory(tmp_path / "run"),
            lambda: MentorPayloads(("skb-test", SKB_BLOB), ("anchors-test", ANCHOR_BLOB)),
        )

    return build
