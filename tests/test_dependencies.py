"""Every third-party package the code imports is declared in pyproject.toml: the package's
own code and the benchmarks in ``[project] dependencies``, the tests' extra ones in the
``test`` extra."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"crlsc_fl", "strategies", "benchmarks", "tests", "conftest"}


def requirement_name(requirement: str) -> str:
    """``"flwr[simulation]==1.42.0"`` -> ``"flwr"`` (PEP 503 normalised)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name, requirement
    return re.sub(r"[-_.]+", "-", name.group()).lower()


def declared(*extras: str) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    return {requirement_name(r) for r in requirements}


def imported_top_levels(folder: str) -> dict[str, str]:
    """{top-level module: a file importing it} of the third-party imports under ``folder``."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        tree = ast.parse(path.read_text())
        # modules a test writes itself ("widget_host.py" under tmp_path) are no dependency
        written = {Path(node.value).stem for node in ast.walk(tree)
                   if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.endswith(".py")}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in FIRST_PARTY | written and top != "__future__":
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize("folder, extras", [("crlsc_fl", ()), ("strategies", ()), ("benchmarks", ()), ("tests", ("test",))])
def test_every_imported_package_is_declared(folder: str, extras: tuple[str, ...]) -> None:
    distributions = importlib.metadata.packages_distributions()
    allowed = declared(*extras)
    missing = {
        f"{top} (imported by {where}; distribution {', '.join(distributions.get(top, ['not installed']))})"
        for top, where in imported_top_levels(folder).items()
        if not {requirement_name(d) for d in distributions.get(top, [])} & allowed
    }
    assert not missing, f"declare in pyproject.toml: {sorted(missing)}"
