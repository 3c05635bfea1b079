"""Everything checked before Flower starts: the scenario and its overrides, user paths made
absolute, the dataset loaded once; and the scenario of a run to resume.

Any problem raises ``ValueError`` (``crlsc_fl.scenario.config.ConfigError`` is one) with a message
for the user; the commands print it and exit 2 before a process is started.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from crlsc_fl.environment import DATA_DIR_ENV
from crlsc_fl.launcher.environment import absolute, pinned_path_env
from crlsc_fl.launcher.overrides import merged_run_config, parse_overrides


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
    data_dir = cfg.data.data_dir or environ.get(DATA_DIR_ENV, "")
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
    pins, env = path_settings(cfg, cwd or Path.cwd(), os.environ)
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
