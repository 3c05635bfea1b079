"""Name -> factory registries with errors that list the valid names (solo-learn style).

A registry sits below the configs that validate names against it. Most are filled by the
module that defines them (encoders, datasets, graphs...). One kind is filled from above: a
registry of **plugins** (``Registry("topology", plugins="strategies")``, the topology ->
strategy registry of :mod:`crlsc_fl.scenario.run_config`) is defined low, its entries
register themselves when their package (the top-level ``strategies``) is imported, and the
registry imports that package by name on its first lookup. So a config validates names
against plugins it never imports, and code that only looks names up need not import the
plugins first. That ``importlib.import_module`` call is the one import in the project
that runs upward (tests/test_architecture.py checks every other one), by the plugin
package's name only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """Raised when a registry lookup fails; the message names the field and valid choices."""


class Registry(Generic[T]):
    """Maps names to factories (classes or functions).

    ``kind`` names what is being looked up (``"encoder"``, ``"method"``...), so that an
    unknown name produces ``unknown encoder 'resnet99'; valid: resnet18, resnet34, resnet50``.
    """

    def __init__(self, kind: str, plugins: str | None = None) -> None:
        """``plugins``: the package whose import registers the entries, imported on the first
        lookup (see the module docstring); None for a registry its own module fills."""
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._plugins = plugins

    def _load_plugins(self) -> None:
        if self._plugins is not None:
            plugins, self._plugins = self._plugins, None  # once; the package's registrations may look names up
            try:
                importlib.import_module(plugins)
            except BaseException:
                self._plugins = plugins  # the next lookup raises the real error again
                raise

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        self._load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid: {', '.join(sorted(self._entries))}"
            ) from None

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
