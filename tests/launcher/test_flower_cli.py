"""Flower's side: Flower homes and the environment of Flower's processes, the connection file,
and parsing what ``flwr ls`` / ``flwr supernode ls`` / ``flwr run`` print."""

from __future__ import annotations

import json
import os
import sys
import tomllib
from pathlib import Path

import pytest

from crlsc_fl.launcher.flower_cli import (
    find_run_id,
    flwr_env,
    free_port,
    make_flwr_home,
    parse_ls_json,
    parse_supernodes_json,
    shell_quote,
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


# Captured from `flwr ls <conn> --format json` (flwr 1.42.0) after one completed and one
# crashed simulation run.
LS_SAMPLE = """{
  "success": true,
  "runs": [
    {
      "run-id": "2296371772530611739",
      "federation-id": "@none/default",
      "fab-id": "tester/flapp",
      "fab-name": "flapp",
      "fab-version": "0.1.0",
      "fab-hash": "4fac7d94a7f8a0b7e3d6c1bd0b7f4a3c2d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a",
      "status": "finished:failed",
      "status-details": "Simulation failed with exception: requested failure",
      "elapsed": 12.047261,
      "pending-at": "2026-11-28 15:19:20Z",
      "starting-at": "2026-11-28 15:19:20Z",
      "running-at": "2026-11-28 15:19:22Z",
      "finished-at": "2026-11-28 15:19:34Z",
      "network-traffic": {"inbound-bytes": 0, "outbound-bytes": 0, "total-bytes": 0},
      "compute-time": {"serverapp-seconds": 12.047261, "clientapp-seconds": 0.0, "total-seconds": 12.047261}
    },
    {
      "run-id": "7850792257349967335",
      "federation-id": "@none/default",
      "fab-id": "tester/flapp",
      "fab-name": "flapp",
      "fab-version": "0.1.0",
      "fab-hash": "08b891d775c532d35c8f4cb2a86285f2e89c07e5f5a23f570fc04659f369d1b1",
      "status": "finished:completed",
      "status-details": "N/A",
      "elapsed": 15.565116,
      "pending-at": "2026-11-28 15:18:56Z",
      "starting-at": "2026-11-28 15:18:56Z",
      "running-at": "2026-11-28 15:18:58Z",
      "finished-at": "2026-11-28 15:19:13Z",
      "network-traffic": {"inbound-bytes": 0, "outbound-bytes": 0, "total-bytes": 0},
      "compute-time": {"serverapp-seconds": 15.565116, "clientapp-seconds": 7.95530637000013,
                       "total-seconds": 23.52042237000013}
    }
  ]
}
"""


def test_parse_ls_json_statuses() -> None:
    runs = {r.run_id: r for r in parse_ls_json(LS_SAMPLE)}
    ok, bad = runs["7850792257349967335"], runs["2296371772530611739"]
    assert ok.status == "finished:completed" and ok.finished and ok.succeeded
    assert bad.status == "finished:failed" and bad.finished and not bad.succeeded
    assert "requested failure" in bad.details
    assert bad.elapsed == pytest.approx(12.047261)
    assert max(runs.values(), key=lambda r: r.pending_at) is bad  # newest run


def test_parse_ls_json_tolerates_leading_text() -> None:
    assert len(parse_ls_json("📄 Listing all runs...\n" + LS_SAMPLE)) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"success": false, "error-message": "no such run"}', r"flwr ls reported failure: no such run"),
        ('{"runs": []}', r"flwr ls reported failure"),
        ("", r"no JSON in flwr ls output: ''"),
        ("Error: connection refused", r"no JSON in flwr ls output: 'Error: connection refused'"),
    ],
)
def test_parse_ls_json_rejects_failures_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_ls_json(text)


@pytest.mark.parametrize(
    ("status", "finished", "succeeded"),
    [("pending", False, False), ("running", False, False), ("finished:completed", True, True),
     ("finished:failed", True, False), ("finished:stopped", True, False)],
)
def test_run_states(status: str, finished: bool, succeeded: bool) -> None:
    text = json.dumps({"success": True, "runs": [{"run-id": 5, "status": status, "status-details": "N/A", "elapsed": None}]})
    (run,) = parse_ls_json(text)
    assert (run.run_id, run.finished, run.succeeded, run.elapsed) == ("5", finished, succeeded, 0.0)


@pytest.mark.parametrize(
    ("nodes", "online"),
    [([], 0), ([{"status": "online"}, {"status": "ONLINE"}, {"status": "offline"}], 2), ([{"node-id": 1}], 1)],
)
def test_supernodes_online_are_counted(nodes: list[dict[str, object]], online: int) -> None:
    assert parse_supernodes_json("Loading...\n" + json.dumps({"success": True, "nodes": nodes})) == online


@pytest.mark.parametrize(
    ("line", "run_id"),
    [
        ("\x1b[32mSuccessfully started run 7850792257349967335\x1b[0m", "7850792257349967335"),
        ("🎊 Successfully started run 42", "42"),
        ("INFO : Starting logstream for run_id `785`", None),
        ("", None),
    ],
)
def test_run_id_from_flwr_run_output(line: str, run_id: str | None) -> None:
    assert find_run_id(line) == run_id


def test_echoed_command_quotes_only_what_needs_it() -> None:
    assert [shell_quote(a) for a in ["flwr", "num-supernodes=3 x=1", ""]] == ["flwr", '"num-supernodes=3 x=1"', '""']
