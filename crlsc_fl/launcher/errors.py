"""The one error type of the launcher's Flower side (kept apart so every module can raise it)."""

from __future__ import annotations


class FlowerError(RuntimeError):
    """Flower infrastructure could not be started or queried; the message says what and where."""
