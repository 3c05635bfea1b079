"""Before Flower starts: ``--set key=value`` parsing, the merged run config, ``--federation-config``
merging, and user paths made absolute against the user's directory."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from crlsc_fl.launcher.scenario import absolute, checkout_root, federation_config, merged_run_config, parse_overrides, pinned_path_env


@pytest.mark.parametrize(
    ("item", "key", "value"),
    [
        ("scenario.rounds=2", "scenario.rounds", 2),
        ("train.lr=0.1", "train.lr", 0.1),
        ("scenario.keep-device-state=true", "scenario.keep-device-state", True),
        ("scenario.name='quoted'", "scenario.name", "quoted"),
        ('scenario.name="double"', "scenario.name", "double"),
        ("scenario.results-dir=/tmp/r", "scenario.results-dir", "/tmp/r"),  # not TOML: the bare string
        (" data.dataset = cifar10 ", "data.dataset", "cifar10"),
        ("scenario.topologies=a=b", "scenario.topologies", "a=b"),  # only the first '=' splits
    ],
)
def test_override_values_are_toml_literals_or_bare_strings(item: str, key: str, value: Any) -> None:
    assert parse_overrides([item]) == {key: value}


def test_a_later_override_of_the_same_key_wins() -> None:
    assert parse_overrides(["scenario.rounds=1", "scenario.rounds=3"]) == {"scenario.rounds": 3}


@pytest.mark.parametrize("item", ["scenario.rounds", "=3", "  =x", ""])
def test_an_override_without_key_or_equals_sign_is_refused_by_name(item: str) -> None:
    with pytest.raises(ValueError, match=r"override .* is not of the form key=value"):
        parse_overrides([item])


def test_overrides_merge_into_a_copy(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text('[scenario]\nname = "x"\nrounds = 5\n')
    assert merged_run_config(scenario, {}, tmp_path / "m.toml") == scenario.resolve()
    values = parse_overrides(["scenario.rounds=2", "scenario.results-dir=/tmp/r", "train.lr=0.1"])
    merged = tomllib.loads(merged_run_config(scenario, values, tmp_path / "m.toml").read_text())
    assert merged == {"scenario": {"name": "x", "rounds": 2, "results-dir": "/tmp/r"}, "train": {"lr": 0.1}}
    assert tomllib.loads(scenario.read_text())["scenario"]["rounds"] == 5  # the user's file is untouched


def test_an_override_below_a_value_names_the_key_and_the_value(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text('[scenario]\nname = "x"\n')
    with pytest.raises(ValueError, match=r"override 'scenario.name.first': 'name' is a value, not a table"):
        merged_run_config(scenario, {"scenario.name.first": 1}, tmp_path / "m.toml")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (None, "num-supernodes=3 client-resources-num-cpus=1"),
        ("client-resources-num-cpus=2 x=1", "num-supernodes=3 client-resources-num-cpus=2 x=1"),
        ("  num-supernodes=5  ", "num-supernodes=5 client-resources-num-cpus=1"),
    ],
)
def test_federation_config_extra_pairs_win(extra: str | None, expected: str) -> None:
    assert federation_config({"num-supernodes": 3, "client-resources-num-cpus": 1}, extra) == expected


def test_federation_config_item_without_equals_sign_is_named() -> None:
    with pytest.raises(ValueError, match=r"--federation-config item 'gpus' is not of the form key=value"):
        federation_config({}, "num-supernodes=2 gpus")


def test_checkout_root_is_the_flower_app() -> None:
    assert "[tool.flwr.app]" in (checkout_root() / "pyproject.toml").read_text()


@pytest.mark.parametrize(("path", "expected"), [("data", "cwd/data"), ("/abs/x", "/abs/x"), ("a/../b", "cwd/b")])
def test_absolute_against_the_users_directory(tmp_path: Path, path: str, expected: str) -> None:
    assert absolute(path, tmp_path / "cwd") == Path(expected.replace("cwd", str(tmp_path / "cwd"), 1))


def test_only_set_path_variables_are_pinned(tmp_path: Path) -> None:
    environ = {"CRLSC_DATA_DIR": "data", "CRLSC_STATE_DIR": "", "CRLSC_CACHE_DIR": "/c", "OTHER": "x"}
    assert pinned_path_env(environ, tmp_path) == {"CRLSC_DATA_DIR": str(tmp_path / "data"), "CRLSC_CACHE_DIR": "/c"}
