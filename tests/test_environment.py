"""The one module of environment variables: its accessors, its table, and that no other module
of ``crlsc_fl`` or ``strategies`` touches ``os.environ``."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from crlsc_fl import environment

ROOT = Path(__file__).resolve().parents[1]
OS_ENVIRONMENT = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def environment_uses(path: Path) -> list[str]:
    """``os.environ`` / ``os.getenv`` / ``from os import environ`` ... in one source file, as ``file:line``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in OS_ENVIRONMENT and isinstance(node.value, ast.Name) \
                and node.value.id == "os":
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and {a.name for a in node.names} & OS_ENVIRONMENT:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_only_the_environment_module_touches_os_environ() -> None:
    sources = [p for package in ("crlsc_fl", "strategies") for p in sorted((ROOT / package).rglob("*.py"))]
    assert len(sources) > 20 and ROOT / "crlsc_fl" / "environment.py" in sources
    uses = [use for path in sources if path.name != "environment.py" or path.parent.name != "crlsc_fl"
            for use in environment_uses(path)]
    assert uses == [], "read environment variables through crlsc_fl.environment"


def test_the_table_names_every_variable() -> None:
    names = [value for key, value in vars(environment).items() if key.endswith("_ENV") and isinstance(value, str)]
    names += list(environment.FLOWER_SETTINGS)
    assert len(names) >= 12
    missing = [name for name in names if f"``{name}``" not in (environment.__doc__ or "")]
    assert missing == []


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("", None), ("rel/dir", Path("rel/dir")), ("/abs", Path("/abs"))])
def test_path_variables_are_read_when_asked(monkeypatch: pytest.MonkeyPatch, value: str | None, expected: Path | None) -> None:
    for name in environment.PATH_VARIABLES:
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert environment.data_dir() == environment.cache_dir() == environment.state_dir() == expected
    assert environment.state_dir({environment.STATE_DIR_ENV: "/given"}) == Path("/given")  # a planned child's


@pytest.mark.parametrize(("value", "expected"), [("", None), ("123", 123), ("12a", None), ("-1", None)])
def test_memory_root_pid_is_a_number_or_nothing(value: str, expected: int | None) -> None:
    assert environment.memory_root_pid({environment.MEMORY_ROOT_ENV: value}) == expected


def test_ray_variables() -> None:
    assert environment.ray_address({}) == "" and environment.ray_address({"RAY_ADDRESS": " h:1 "}) == "h:1"
    assert environment.ray_job_config({}) == {}
    job = {"runtime_env": {"env_vars": {"A": "1"}}}
    assert environment.ray_job_config({environment.RAY_JOB_CONFIG_ENV: json.dumps(job)}) == job


def test_current_is_a_copy_and_set_default_keeps_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRLSC_TEST_VARIABLE", "mine")
    copy = environment.current()
    copy["CRLSC_TEST_VARIABLE"] = "changed"
    assert environment.read("CRLSC_TEST_VARIABLE") == "mine"
    environment.set_default("CRLSC_TEST_VARIABLE", "other")
    assert environment.read("CRLSC_TEST_VARIABLE") == "mine"
    monkeypatch.delenv("CRLSC_TEST_VARIABLE")
    environment.set_default("CRLSC_TEST_VARIABLE", "default")
    assert environment.read("CRLSC_TEST_VARIABLE") == "default"
    monkeypatch.delenv("CRLSC_TEST_VARIABLE")
