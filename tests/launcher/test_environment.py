"""Flower homes, the environment of Flower's processes, absolute user paths."""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

import pytest

from crlsc_fl.launcher.environment import (
    absolute,
    checkout_root,
    flwr_env,
    free_port,
    make_flwr_home,
    pinned_path_env,
    write_connection,
)


def test_no_flower_home_leaks_into_git(tmp_path: Path) -> None:
    home = make_flwr_home(tmp_path, "unit")
    assert home.parent == tmp_path / ".flwr" and home.name.startswith("unit-") and home.is_dir()
    assert make_flwr_home(tmp_path, "unit") != home  # same second, same pid: still fresh
    assert (tmp_path / ".flwr" / ".gitignore").read_text().strip().endswith("*")


def test_flower_environment(tmp_path: Path) -> None:
    env = flwr_env(tmp_path / "home", tmp_path, base={"PATH": "/usr/bin", "RAY_ADDRESS": "x", "KEEP": "1"})
    assert env["FLWR_HOME"] == str(tmp_path / "home") and env["CRLSC_PROJECT_ROOT"] == str(tmp_path)
    assert env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] == "1" and env["FLWR_TELEMETRY_ENABLED"] == "0"
    assert env["FLWR_DISABLE_UPDATE_CHECK"] == "1" and env["PYTHONUNBUFFERED"] == "1" and env["KEEP"] == "1"
    assert "RAY_ADDRESS" not in env
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_connection_file_points_at_the_loopback_superlink(tmp_path: Path) -> None:
    port = free_port()
    assert 0 < port < 65536
    config = tomllib.loads(write_connection(tmp_path, "crlsc", f"127.0.0.1:{port}").read_text())
    assert config == {"superlink": {"default": "crlsc", "crlsc": {"address": f"127.0.0.1:{port}", "insecure": True}}}


def test_checkout_root_is_the_flower_app() -> None:
    assert "[tool.flwr.app]" in (checkout_root() / "pyproject.toml").read_text()


@pytest.mark.parametrize(("path", "expected"), [("data", "cwd/data"), ("/abs/x", "/abs/x"), ("a/../b", "cwd/b")])
def test_absolute_against_the_users_directory(tmp_path: Path, path: str, expected: str) -> None:
    assert absolute(path, tmp_path / "cwd") == Path(expected.replace("cwd", str(tmp_path / "cwd"), 1))


def test_only_set_path_variables_are_pinned(tmp_path: Path) -> None:
    environ = {"CRLSC_DATA_DIR": "data", "CRLSC_STATE_DIR": "", "CRLSC_CACHE_DIR": "/c", "OTHER": "x"}
    assert pinned_path_env(environ, tmp_path) == {"CRLSC_DATA_DIR": str(tmp_path / "data"), "CRLSC_CACHE_DIR": "/c"}
