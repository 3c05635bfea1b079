"""The import structure of ``crlsc_fl/`` and ``strategies/``: no cycles, nothing imports upward.

Every import statement counts, wherever it stands: at the top of a module, under
``if TYPE_CHECKING:``, inside a function or a ``try``. The layer order (bottom first) is
:data:`LAYERS`; a module may import modules of its own unit (package) freely, as long as no
cycle forms, and of a lower layer, never of its own layer's other units or of a higher one.
Imports by name at run time (``importlib``) are not statements and are not seen here: the
one that runs upward is the topology registry's documented plugin import
(:mod:`crlsc_fl.registry`).

To place a new package, add it to :data:`LAYERS`; a module outside the table fails
:func:`test_every_module_has_a_place_in_the_layers`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("crlsc_fl", "strategies")

# Bottom first. Each entry is a unit: a package (with everything under it) or a module.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("crlsc_fl", "crlsc_fl.validation", "crlsc_fl.registry", "crlsc_fl.environment", "crlsc_fl.accelerator", "crlsc_fl.memory"),
    ("crlsc_fl.data", "crlsc_fl.augment", "crlsc_fl.loss"),
    ("crlsc_fl.models",),
    ("crlsc_fl.eval",),
    ("crlsc_fl.kb",),
    ("crlsc_fl.methods", "crlsc_fl.stage2"),
    ("crlsc_fl.scenario",),  # what a run is: ScenarioConfig and the federation's component configs
    ("crlsc_fl.bookkeeping",),  # the server's records
    ("crlsc_fl.device",),  # the device's work
    ("crlsc_fl.outputs",),  # the run's outputs
    ("crlsc_fl.codec",),  # every Flower message, for the strategies and the apps
    ("strategies",),
    ("crlsc_fl.flower",),
    ("crlsc_fl.launcher",),
    ("crlsc_fl.launch", "crlsc_fl.deploy"),
)
UNITS = [unit for layer in LAYERS for unit in layer]
RANK = {unit: rank for rank, layer in enumerate(LAYERS) for unit in layer}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the packages, by dotted name (a package by its ``__init__.py``)."""
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def unit_of(module: str) -> str | None:
    """The longest table entry that is ``module`` or a package above it."""
    matches = [u for u in UNITS if module == u or module.startswith(u + ".")]
    return max(matches, key=len) if matches else None


def nearest(name: str, known: set[str] | dict[str, Path]) -> str:
    """The project module that ``name`` (a module or a name in one) lies in, or ""."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name


def import_targets(tree: ast.AST, module: str, is_package: bool, known: set[str] | dict[str, Path]) -> Iterator[tuple[int, str]]:
    """(line, project module) of every import statement anywhere in ``tree``, relative imports
    resolved; ``from a import b`` imports the module ``a.b`` where there is one, else ``a``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, nearest(alias.name, known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                yield node.lineno, sub if sub in known else nearest(source, known)


@cache
def imports() -> dict[str, dict[str, int]]:
    """module -> {imported project module: first line}."""
    known = modules()
    graph: dict[str, dict[str, int]] = {}
    for module, path in known.items():
        targets: dict[str, int] = {}
        for line, target in import_targets(ast.parse(path.read_text(), str(path)), module, path.name == "__init__.py", known):
            if target and target != module:
                targets.setdefault(target, line)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_every_module_has_a_place_in_the_layers() -> None:
    assert len(modules()) > 50  # the packages were found
    assert [m for m in modules() if unit_of(m) is None] == []
    assert [u for u in UNITS if not any(m == u or m.startswith(u + ".") for m in modules())] == [], "table entries without a module"


def test_no_import_cycles() -> None:
    assert cycles(imports()) == []


@pytest.mark.parametrize("unit", UNITS)
def test_imports_follow_the_layer_order(unit: str) -> None:
    """Every import out of ``unit`` goes to a lower layer."""
    upward = [
        f"{module}:{line} imports {target} (layer {RANK[unit_of(target)]} {unit_of(target)}, not below layer {RANK[unit]} {unit})"
        for module, targets in sorted(imports().items()) if unit_of(module) == unit
        for target, line in sorted(targets.items(), key=lambda item: item[1])
        if unit_of(target) != unit and RANK[unit_of(target)] >= RANK[unit]  # type: ignore[index]
    ]
    assert upward == []


def test_the_checks_see_type_only_in_function_and_relative_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "if TYPE_CHECKING:\n    from crlsc_fl.outputs.results import summarize\n"
        "def later():\n    import strategies.base\n"
    )
    known = {"crlsc_fl.kb", "crlsc_fl.kb.sibling", "crlsc_fl.outputs.results", "strategies", "strategies.base"}
    targets = {target for _, target in import_targets(ast.parse(source), "crlsc_fl.kb.mentor", False, known)}
    assert targets == {"", "crlsc_fl.kb.sibling", "crlsc_fl.outputs.results", "strategies.base"}  # "": typing
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]
