"""Communication accounting: every KB and weight transfer, per link, tier and round.

Flower is a star (the server relays every message), so strategies record each transfer on
the link it stands for: ``cloud-edge`` (server to an edge node), ``edge-device`` and
``d2d`` (device to device). Bytes turn into simulated transfer time with the scenario's
per-tier bandwidth and latency: seconds = latency + 8 * bytes / bandwidth.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass

from crlsc_fl.scenario.network import NetworkConfig

TIERS = ("cloud-edge", "edge-device", "d2d")


@dataclass(frozen=True)
class Transfer:
    server_round: int
    kind: str  # "kb", "anchors", "anchor-pkb" or "weights"
    src: str  # "cloud", "edge-3", "device-17"
    dst: str
    tier: str
    nbytes: int
    seconds: float


class CommLedger:
    def __init__(self, network: NetworkConfig) -> None:
        self.network = network
        self.transfers: list[Transfer] = []

    def link_seconds(self, tier: str, nbytes: int) -> float:
        if tier not in TIERS:
            raise ValueError(f"unknown link tier {tier!r}; valid: {', '.join(TIERS)}")
        prefix = tier.replace("-", "_")
        mbps = getattr(self.network, f"{prefix}_mbps")
        latency_ms = getattr(self.network, f"{prefix}_latency_ms")
        return latency_ms / 1000 + 8 * nbytes / (mbps * 1e6)

    def record(self, server_round: int, kind: str, src: str, dst: str, tier: str, nbytes: int) -> Transfer:
        transfer = Transfer(server_round, kind, src, dst, tier, int(nbytes), self.link_seconds(tier, nbytes))
        self.transfers.append(transfer)
        return transfer

    def device_totals(self, server_round: int | None = None) -> dict[str, dict[str, float]]:
        """Per device node: bytes received/sent and simulated transfer seconds."""
        totals: dict[str, dict[str, float]] = defaultdict(lambda: {"bytes_received": 0, "bytes_sent": 0, "transfer_seconds": 0.0})
        for t in self.transfers:
            if server_round is not None and t.server_round != server_round:
                continue
            if t.dst.startswith("device-"):
                totals[t.dst]["bytes_received"] += t.nbytes
                totals[t.dst]["transfer_seconds"] += t.seconds
            if t.src.startswith("device-"):
                totals[t.src]["bytes_sent"] += t.nbytes
        return dict(totals)

    def summary(self) -> dict[str, object]:
        by_tier: dict[str, int] = defaultdict(int)
        by_kind: dict[str, int] = defaultdict(int)
        by_round: dict[int, int] = defaultdict(int)
        for t in self.transfers:
            by_tier[t.tier] += t.nbytes
            by_kind[t.kind] += t.nbytes
            by_round[t.server_round] += t.nbytes
        return {
            "total_bytes": sum(by_tier.values()),
            "bytes_by_tier": dict(by_tier),
            "bytes_by_kind": dict(by_kind),
            "bytes_by_round": {str(k): v for k, v in sorted(by_round.items())},
            "transfers": len(self.transfers),
        }

    def rows(self) -> list[dict[str, object]]:
        return [asdict(t) for t in self.transfers]
