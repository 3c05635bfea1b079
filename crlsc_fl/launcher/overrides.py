"""``--set key=value`` overrides and the run config handed to ``flwr run``.

``flwr run --run-config`` takes ONE toml path or key=value pairs, never both, so overrides
(dotted keys such as ``scenario.rounds``) are merged into a copy of the scenario TOML.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tomli_w


def split_pair(item: str, what: str) -> tuple[str, str]:
    """``"key=value"`` -> ``("key", "value")``; ``what`` names the option in the error."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"{what} {item!r} is not of the form key=value")
    return key, value


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are TOML literals (``3``, ``0.5``, ``true``, ``'s'``) or bare strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, raw = split_pair(item, "override")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:  # a bare word such as results/x: taken as the string
            value = raw.strip()
        out[key] = value
    return out


def merged_run_config(scenario: Path, overrides: Mapping[str, Any], dest: Path) -> Path:
    """Return a TOML file for ``flwr run --run-config``: the scenario itself, or a merged copy at ``dest``."""
    scenario = scenario.resolve()
    if not overrides:
        return scenario
    table = tomllib.loads(scenario.read_text())
    for dotted, value in overrides.items():
        node = table
        *parents, leaf = dotted.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"override {dotted!r}: {part!r} is a value, not a table, in {scenario}")
            node = child
        node[leaf] = value
    dest.write_text(f"# {scenario} with overrides {dict(overrides)}\n" + tomli_w.dumps(table))
    return dest


def federation_settings(defaults: Mapping[str, Any], extra: str | None) -> dict[str, str]:
    """Merge ``--federation-config`` pairs: ``extra`` (``"k=v k2=v2"``) wins over ``defaults``."""
    merged = {k: str(v) for k, v in defaults.items()}
    for item in (extra or "").split():
        key, value = split_pair(item, "--federation-config item")
        merged[key] = value
    return merged


def federation_config(defaults: Mapping[str, Any], extra: str | None) -> str:
    """:func:`federation_settings` as the ``"k=v k2=v2"`` string ``flwr run --federation-config`` takes."""
    return " ".join(f"{k}={v}" for k, v in federation_settings(defaults, extra).items())
