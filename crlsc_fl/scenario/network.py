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
    cloud_edge_mbps: Bandwidth = 1000.0
    cloud_edge_latency_ms: Latency = 20.0
    edge_device_mbps: Bandwidth = 100.0
    edge_device_latency_ms: Latency = 10.0
    d2d_mbps: Bandwidth = 20.0
    d2d_latency_ms: Latency = 5.0
