"""Everything checked before Flower starts: the scenario and its ``--set`` overrides, user
paths made absolute, the dataset loaded once; and the scenario of a run to resume.

Overrides: ``flwr run --run-config`` takes ONE toml path or key=value pairs, never both, so
overrides (dotted keys such as ``scenario.rounds``) are merged into a copy of the scenario
TOML (:func:`merged_run_config`); ``--federation-config`` pairs are merged the same way.

User paths: Flower runs the ServerApp and the ClientApps from its own directories, so every
path the user gave relative to the launcher's working directory (``data.data-dir``,
``scenario.results-dir``, the :data:`~crlsc_fl.environment.PATH_VARIABLES`) is made absolute
first.

Any problem raises ``ValueError`` (``crlsc_fl.scenario.config.ConfigError`` is one) with a message
for the user; the commands print it and exit 2 before a process is started.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tomli_w

from crlsc_fl import environment
from crlsc_fl.environment import DATA_DIR_ENV, PATH_VARIABLES


def checkout_root() -> Path:
    """This source checkout: the default Flower app root (it holds ``pyproject.toml``).

    Not :func:`crlsc_fl.outputs.run_dir.results_anchor`, which is where the *ServerApp*
    anchors relative results directories (``$CRLSC_PROJECT_ROOT``, set from the app root).
    """
    return Path(__file__).resolve().parents[2]


def absolute(path: str, cwd: Path) -> Path:
    """``path`` resolved against the user's working directory ``cwd`` (``~`` expanded)."""
    p = Path(path).expanduser()
    return (p if p.is_absolute() else cwd / p).resolve()


def pinned_path_env(environ: Mapping[str, str], cwd: Path) -> dict[str, str]:
    """The set, non-empty :data:`~crlsc_fl.environment.PATH_VARIABLES` of ``environ`` made absolute against ``cwd``."""
    return {name: str(absolute(value, cwd)) for name in PATH_VARIABLES if (value := environment.read(name, environ))}


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


def prepare_run_config(scenario: Path, overrides: Sequence[str], workdir: Path) -> tuple[Any, Path]:
    """Validate the scenario (then the scenario with overrides); return (config, run-config TOML path)."""
    from crlsc_fl.scenario.config import load_scenario  # lazy: only the validation needs the app's code

    cfg = load_scenario(scenario)
    values = parse_overrides(overrides)
    run_config = merged_run_config(scenario, values, workdir / "run-config.toml")
    if values:
        try:
            cfg = load_scenario(run_config)
        except ValueError as err:  # name the user's file and overrides, not our merged copy
            raise ValueError(f"{scenario} with overrides {values}: {str(err).split(': ', 1)[-1]}") from None
    return cfg, run_config


def validated(scenario: Path, overrides: Sequence[str]) -> tuple[Any, Path, Path]:
    """Like :func:`prepare_run_config` in a temporary directory; returns (config, run-config, tmpdir)."""
    tmp = Path(tempfile.mkdtemp(prefix="crlsc-run-config-"))
    try:
        cfg, run_config = prepare_run_config(scenario, overrides, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return cfg, run_config, tmp


def path_settings(cfg: Any, cwd: Path, environ: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """Scenario overrides and environment entries that pin every user path to ``cwd``.

    ``data.data-dir`` (else ``$CRLSC_DATA_DIR``) and ``scenario.results-dir`` become absolute
    overrides, so every ClientApp and the ServerApp see the directory the user meant;
    path variables (``$CRLSC_STATE_DIR`` ...) are made absolute in the environment Flower inherits.
    """
    overrides = [f"scenario.results-dir={absolute(cfg.scenario.results_dir, cwd)}"]
    data_dir = cfg.data.data_dir or environment.read(DATA_DIR_ENV, environ)
    if data_dir and cfg.data.dataset != "synthetic":
        overrides.append(f"data.data-dir={absolute(data_dir, cwd)}")
    return overrides, pinned_path_env(environ, cwd)


def check_data(cfg: Any) -> None:
    """Load the scenario's dataset and partition now, before Ray starts: a missing dataset or an
    impossible partition is a user error (exit 2), not 100 failing devices. Where no data
    directory was named this also downloads it once (torchvision datasets)."""
    from crlsc_fl.scenario.devices import federated_data

    federated_data(cfg.data, cfg.devices.num_devices, cfg.scenario.seed)


def prepare(scenario: Path, overrides: Sequence[str], cwd: Path | None = None) -> tuple[Any, Path, Path, dict[str, str]]:
    """Validate, pin user paths to ``cwd``, check the data; return (config, run config, tmpdir, env)."""
    from crlsc_fl.data import DatasetNotFoundError

    cfg, run_config, tmp = validated(scenario, overrides)
    shutil.rmtree(tmp, ignore_errors=True)
    pins, env = path_settings(cfg, cwd or Path.cwd(), environment.current())
    cfg, run_config, tmp = validated(scenario, [*overrides, *pins])
    try:
        check_data(cfg)
    except (DatasetNotFoundError, ValueError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(str(err)) from None
    return cfg, run_config, tmp, env


def resume_scenario(results: Path, dest: Path) -> Path:
    """The scenario of the run in ``results`` (its ``config.json``) with ``scenario.resume`` set."""
    config_file = results / "config.json"
    if not config_file.is_file():
        raise ValueError(f"--resume {results}: {config_file} not found; give the results directory of a run")
    values = dict(json.loads(config_file.read_text())["scenario"])
    values["scenario.resume"] = str(results.resolve())
    empty = dest / "empty.toml"
    empty.write_text("")
    return merged_run_config(empty, values, dest / "resume.toml")
