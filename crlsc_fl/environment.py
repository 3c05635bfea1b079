"""Every environment variable the project reads or sets, named here, and read only here.

Why one module: a variable read in five places gets five defaults and five spellings, and
nobody can list what a run depends on. So nothing else in ``crlsc_fl`` or ``strategies``
touches ``os.environ``: code reads a variable through an accessor below (read at call time,
so ``monkeypatch.setenv`` in a test is seen), and builds a child's environment from
:func:`current` (handing that dict to a subprocess is fine). The module imports nothing of
the project, so every layer may use it.

==================================================  ==========  =========================================
variable                                            read / set  what for
==================================================  ==========  =========================================
``CRLSC_DATA_DIR``                                  read        where datasets are looked for (offline
                                                                copies; ``crlsc_fl.data.paths``); the
                                                                launcher makes it absolute
``CRLSC_CACHE_DIR``                                 read        server features, built KBs, dataset
                                                                conversions (default ``~/.cache/crlsc_fl``)
``CRLSC_STATE_DIR``                                 read        the devices' state (encoders, received
                                                                KBs) of every run (default: the cache's
                                                                ``device-state``)
``CRLSC_PROJECT_ROOT``                              set, read   set by the launcher for Flower's
                                                                processes: where the ServerApp resolves a
                                                                relative ``scenario.results-dir``
``CRLSC_MEMORY_ROOT_PID``                           set, read   set by the launcher (its pid): the
                                                                process tree whose memory the ServerApp
                                                                samples
``RAY_ADDRESS``                                     read, set   Ray's own: an existing cluster for
                                                                ``crlsc-fl run`` (else ``--ray-address``);
                                                                removed from Flower's environment, set
                                                                again only for a checked cluster
``RAY_JOB_CONFIG_JSON_ENV_VAR``                     read, set   Ray's job config: carries the ``CRLSC_*``
                                                                paths to the cluster's workers
``HF_HUB_OFFLINE``                                  set         ``1`` unless set: the MiniLM server
                                                                model's weights ship with its package
``FLWR_HOME``                                       set         Flower's: the per-invocation Flower home
``FLWR_TELEMETRY_ENABLED``,                         set         Flower's: no telemetry, no update check,
``FLWR_DISABLE_UPDATE_CHECK``,                                  no runtime ``uv sync`` (no internet; the
``FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION``                app's dependencies are in this venv)
``PYTHONUNBUFFERED``                                set         ``flwr run --stream`` output line by line
``PATH``                                            read, set   this interpreter's ``bin`` first, so the
                                                                Flower executables of this venv are found
==================================================  ==========  =========================================
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DATA_DIR_ENV = "CRLSC_DATA_DIR"
CACHE_DIR_ENV = "CRLSC_CACHE_DIR"
STATE_DIR_ENV = "CRLSC_STATE_DIR"
PROJECT_ROOT_ENV = "CRLSC_PROJECT_ROOT"
MEMORY_ROOT_ENV = "CRLSC_MEMORY_ROOT_PID"
RAY_ADDRESS_ENV = "RAY_ADDRESS"
RAY_JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # ray._private.runtime_env.constants
HF_OFFLINE_ENV = "HF_HUB_OFFLINE"
FLOWER_HOME_ENV = "FLWR_HOME"
PATH_ENV = "PATH"

# paths a user may give relative to the directory the launcher was started in
PATH_VARIABLES = (DATA_DIR_ENV, STATE_DIR_ENV, CACHE_DIR_ENV)
# what every Flower process of an invocation gets, besides FLWR_HOME and CRLSC_PROJECT_ROOT
FLOWER_SETTINGS = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "PYTHONUNBUFFERED": "1",
}


def current() -> dict[str, str]:
    """A copy of this process's environment: the base of a child's environment."""
    return dict(os.environ)


def read(name: str, environ: Mapping[str, str] | None = None) -> str:
    """The variable's value, ``''`` when unset; from ``environ`` if given (e.g. a child's planned
    environment), else from this process's."""
    return (os.environ if environ is None else environ).get(name, "")


def path(name: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """The variable as a path, as written (not resolved); None when unset or empty."""
    value = read(name, environ)
    return Path(value) if value else None


def data_dir() -> Path | None:
    """``$CRLSC_DATA_DIR``, if set."""
    return path(DATA_DIR_ENV)


def cache_dir() -> Path | None:
    """``$CRLSC_CACHE_DIR``, if set."""
    return path(CACHE_DIR_ENV)


def state_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """``$CRLSC_STATE_DIR`` (of ``environ`` if given), if set."""
    return path(STATE_DIR_ENV, environ)


def project_root() -> Path | None:
    """``$CRLSC_PROJECT_ROOT``, if set."""
    return path(PROJECT_ROOT_ENV)


def memory_root_pid(environ: Mapping[str, str] | None = None) -> int | None:
    """``$CRLSC_MEMORY_ROOT_PID`` as a pid; None when unset or not a number."""
    value = read(MEMORY_ROOT_ENV, environ)
    return int(value) if value.isdigit() else None


def ray_address(environ: Mapping[str, str] | None = None) -> str:
    """``$RAY_ADDRESS`` without surrounding blanks, ``''`` when unset."""
    return read(RAY_ADDRESS_ENV, environ).strip()


def ray_job_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Ray's job config (``$RAY_JOB_CONFIG_JSON_ENV_VAR``, set by ``ray job submit``), ``{}`` when unset."""
    return dict(json.loads(read(RAY_JOB_CONFIG_ENV, environ) or "{}"))


def set_default(name: str, value: str) -> None:
    """Set a variable in this process unless it is set (for libraries that read it themselves)."""
    os.environ.setdefault(name, value)
