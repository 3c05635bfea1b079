"""Topology name -> strategy class."""

from crlsc_fl.registry import Registry

STRATEGIES: Registry[type] = Registry("topology")
