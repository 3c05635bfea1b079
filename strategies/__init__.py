"""Knowledge-transfer strategies, one file per topology, looked up by name."""

from strategies import cloud_edge, fedavg, hybrid, local, p2p  # noqa: F401,E402  (register)
from strategies.registry import STRATEGIES

__all__ = ["STRATEGIES"]
