"""Name registries: errors list the valid names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crlsc_fl.registry import Registry, UnknownNameError


def test_registry() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("b")(2)
    reg.register("a")(1)
    assert reg.get("a") == 1 and reg.names() == ["a", "b"] and list(reg) == ["a", "b"]
    assert "a" in reg and "c" not in reg
    with pytest.raises(UnknownNameError, match="unknown widget 'c'; valid: a, b"):
        reg.get("c")
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        reg.register("a")(3)
    assert issubclass(UnknownNameError, ValueError)


def test_a_plugin_registry_imports_its_plugins_on_the_first_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "widget_host.py").write_text(
        "from crlsc_fl.registry import Registry\nWIDGETS = Registry('widget', plugins='widget_plugins')\n"
    )
    (tmp_path / "widget_plugins.py").write_text("from widget_host import WIDGETS\nWIDGETS.register('knob')(1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import widget_host  # type: ignore[import-not-found]

    assert "widget_plugins" not in sys.modules
    assert "knob" in widget_host.WIDGETS and widget_host.WIDGETS.get("knob") == 1
    assert "widget_plugins" in sys.modules
    for name in ("widget_host", "widget_plugins"):
        monkeypatch.delitem(sys.modules, name)


def test_a_scenario_validates_topology_names_without_importing_the_strategies_first() -> None:
    code = ("import sys; from crlsc_fl.scenario.run_config import RunConfig\n"
            "assert 'strategies' not in sys.modules\n"
            "RunConfig(topologies=('p2p', 'fedavg'))\n"
            "assert 'strategies' in sys.modules\n"
            "try:\n    RunConfig(topologies=('star',))\nexcept ValueError as err:\n    print(err)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'star' is not allowed; valid: cloud-edge, fedavg, hybrid, local, p2p" in out
