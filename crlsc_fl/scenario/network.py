"""The simulated links of a federation (the scenario's ``[network]`` table).

Flower relays every message through the server; the strategies record each transfer on
the link it stands for (:class:`crlsc_fl.bookkeeping.ledger.CommLedger`), and these per-tier
bandwidths (Mbit/s) and latencies (ms) turn its bytes into seconds.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from crlsc_fl.validation import component

Bandwidth = Annotated[float, Field(gt=0)]
Latency = Annotated[float, Field(ge=0)]


@component
class NetworkConfig:
    """Bandwidth and latency of each tier of simulated links."""

    cloud_edge_mbps: Annotated[Bandwidth, Field(description="bandwidth (Mbit/s) between the cloud server and an edge server")] = 1000.0
    cloud_edge_latency_ms: Annotated[Latency, Field(description="latency (ms) between the cloud server and an edge server")] = 20.0
    edge_device_mbps: Annotated[Bandwidth, Field(description="bandwidth (Mbit/s) between an edge server and a device")] = 100.0
    edge_device_latency_ms: Annotated[Latency, Field(description="latency (ms) between an edge server and a device")] = 10.0
    d2d_mbps: Annotated[Bandwidth, Field(description="bandwidth (Mbit/s) between two devices (the peers of `p2p` and `hybrid`)")] = 20.0
    d2d_latency_ms: Annotated[Latency, Field(description="latency (ms) between two devices")] = 5.0
