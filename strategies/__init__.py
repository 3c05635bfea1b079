"""Knowledge-transfer strategies, one file per topology, looked up by name."""

from strategies.registry import STRATEGIES
from strategies import cloud_edge, fedavg, hybrid, local, p2p  # noqa: F401,E402  (register)

__all__ = ["STRATEGIES"]
