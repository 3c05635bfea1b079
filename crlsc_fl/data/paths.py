"""The one place that decides where data, caches and the devices' state live.

Order for the data directory: an explicit value (config key ``data-dir``), then the
``CRLSC_DATA_DIR`` environment variable, then ``<cache dir>/data``. The cache directory
is ``CRLSC_CACHE_DIR`` or ``~/.cache/crlsc_fl``. The devices' state root
(:mod:`crlsc_fl.device.device_store`): the node config key ``state-dir``, then
``CRLSC_STATE_DIR``, then ``<cache dir>/device-state``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crlsc_fl.environment import CACHE_DIR_ENV, DATA_DIR_ENV, STATE_DIR_ENV


def cache_dir(sub: str = "") -> Path:
    """Return (and create) the cache directory, or its subdirectory ``sub``."""
    root = Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "crlsc_fl")
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir_named(explicit: str | os.PathLike[str] | None = None) -> bool:
    """True when the user named a data directory (config key or environment variable): then
    the dataset must be there and nothing is downloaded."""
    return bool(explicit) or bool(os.environ.get(DATA_DIR_ENV))


def resolve_data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the data directory: explicit value, then $CRLSC_DATA_DIR, then the cache."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser().resolve()
    return cache_dir("data")


def state_root(node_config: Mapping[str, Any] | None = None) -> Path:
    """Where devices keep their state: a node's ``state-dir``, then $CRLSC_STATE_DIR, then the cache."""
    explicit = (node_config or {}).get("state-dir") or os.environ.get(STATE_DIR_ENV)
    return Path(str(explicit)).expanduser().resolve() if explicit else cache_dir("device-state")
