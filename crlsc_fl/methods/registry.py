"""The stage-1 method registry: name -> method class, whose class attributes say what it
needs (:mod:`crlsc_fl.methods.needs`)."""

from __future__ import annotations

from crlsc_fl.methods.base import Stage1Method
from crlsc_fl.registry import Registry

METHODS: Registry[type[Stage1Method]] = Registry("method")
