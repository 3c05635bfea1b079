"""Topology name -> strategy class: the registry each strategy registers itself in.

It is defined below the scenario config that validates topology names against it
(:data:`crlsc_fl.scenario.run_config.TOPOLOGIES`, which imports this package on its first
lookup); ``STRATEGIES`` is that registry under the name the strategies use.
"""

from crlsc_fl.scenario.run_config import TOPOLOGIES

STRATEGIES = TOPOLOGIES
