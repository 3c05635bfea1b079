"""The scenario keys' generated docs: every key described in its field, pyproject.toml's
block and the README key table equal to what the fields generate."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import Field

from crlsc_fl.scenario import key_docs
from crlsc_fl.scenario.config import ScenarioConfig, flatten
from crlsc_fl.validation import ConfigError, KeyDoc, component, in_range
from crlsc_fl.validation import key_docs as component_key_docs

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "regenerate: python -m crlsc_fl.scenario --write pyproject.toml README.md"


def test_pyproject_app_config_is_the_generated_block() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert key_docs.pyproject_block() in text, REGENERATE
    table = tomllib.loads(text)["tool"]["flwr"]["app"]["config"]
    assert flatten(table) == ScenarioConfig().to_flat()


def test_key_table_is_generated() -> None:
    assert key_docs.keys_table() in (ROOT / "README.md").read_text(), REGENERATE


def test_every_scenario_key_is_described_once() -> None:
    keys = key_docs.scenario_keys()
    described = {f"{table}.{doc.key}" for table, (_, docs) in keys.items() for doc in docs}
    assert described == set(ScenarioConfig().to_flat())
    assert all(len(doc.description) > 10 for _, docs in keys.values() for doc in docs)


@component
class _Example:
    mode: Annotated[Literal["a", "b", "c"], Field(description="the mode")] = "a"
    count: Annotated[int, Field(ge=1, description="how many")] = 2
    snr: Annotated[float, in_range(-20, 40), Field(description="the SNR")] = 10.0
    fraction: Annotated[float, Field(gt=0, le=1, description="a fraction")] = 0.5


@component
class _Undescribed:
    count: Annotated[int, Field(ge=1)] = 2


def test_allowed_values_are_read_off_the_type() -> None:
    assert component_key_docs(_Example()) == [
        KeyDoc("mode", "a", "the mode", "`a`, `b` or `c`"),
        KeyDoc("count", 2, "how many", ">= 1"),
        KeyDoc("snr", 10.0, "the SNR", "in [-20, 40]"),
        KeyDoc("fraction", 0.5, "a fraction", "> 0; <= 1"),
    ]


@pytest.mark.parametrize(
    "description, allowed, text",
    [
        ("the mode", "`a` or `b`; >= 1", "the mode; allowed: `a` or `b`, >= 1"),
        ("`a` (one) or `b` (two)", "`a` or `b`", "`a` (one) or `b` (two)"),  # the choices named already
        ("`a` (one)", "`a` or `b`", "`a` (one); allowed: `a` or `b`"),
        ("a count", "", "a count"),
    ],
)
def test_comment_names_what_the_description_does_not(description: str, allowed: str, text: str) -> None:
    assert key_docs.what(KeyDoc("key", 0, description, allowed)) == text


def test_a_key_without_description_fails() -> None:
    with pytest.raises(ConfigError, match=r"_Undescribed.count has no Field\(description=...\)"):
        component_key_docs(_Undescribed())


def test_pyproject_block_comments_every_key() -> None:
    block = key_docs.pyproject_block().splitlines()
    assert block[block.index("[tool.flwr.app.config.scenario]") + 1 :][:2] == [
        "# the run's name: results go to `<results-dir>/<name>/<run id>/`", 'name = "quick"'
    ]
    keys = [i for i, line in enumerate(block) if " = " in line and not line.startswith("#")]
    assert all(block[i - 1].startswith("#") for i in keys)


@pytest.mark.parametrize("generated", ["pyproject", "keys"])
def test_write_replaces_only_the_generated_part(tmp_path: Path, generated: str) -> None:
    start, (end, generate) = list(key_docs.GENERATED.items())[0 if generated == "pyproject" else 1]
    path = tmp_path / "file"
    path.write_text(f"before\n{start}\nstale\n{end}\nafter\n")
    assert key_docs.write_generated(path)
    assert path.read_text() == f"before\n{generate()}\nafter\n"
    assert not key_docs.write_generated(path)
    path.write_text("no markers\n")
    with pytest.raises(ConfigError, match="has no generated part"):
        key_docs.write_generated(path)
