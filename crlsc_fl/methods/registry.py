"""The stage-1 method registry."""

from __future__ import annotations

from crlsc_fl.registry import Registry

METHODS: Registry[type] = Registry("method")
