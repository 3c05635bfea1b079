"""Name registries: errors list the valid names."""

from __future__ import annotations

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
