"""Checking a Ray address before anything starts, and handing it on (no cluster needed here;
``tests/flower/test_ray_cluster_simulation.py`` runs on a real two-node cluster)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from crlsc_fl import launch
from crlsc_fl.launcher.environment import free_port
from crlsc_fl.launcher.ray_cluster import (
    JOB_CONFIG_ENV,
    RayCluster,
    RayClusterError,
    RayNode,
    RayTarget,
    check_address,
    check_fits,
    check_reachable,
    driver_env,
    probe,
    requested_target,
    split_address,
    worker_env,
)


def synthetic_scenario(path: Path) -> Path:
    path.write_text('[scenario]\nname = "x"\n\n[data]\ndataset = "synthetic"\nsamples-per-device = 16\ntest-samples = 10\n')
    return path


def closed_port() -> int:
    """A loopback port nobody listens on (free a moment ago)."""
    return free_port()


@pytest.mark.parametrize(
    ("option", "environ", "expected"),
    [
        (None, {}, None),
        (None, {"RAY_ADDRESS": " 10.0.0.5:6379 "}, RayTarget("10.0.0.5:6379", "$RAY_ADDRESS")),
        ("h:1", {"RAY_ADDRESS": "10.0.0.5:6379"}, RayTarget("h:1", "--ray-address")),  # the option wins
        ("", {"RAY_ADDRESS": "10.0.0.5:6379"}, None),  # '' or local: a private instance
        ("local", {"RAY_ADDRESS": "10.0.0.5:6379"}, None),
        (None, {"RAY_ADDRESS": "local"}, None),
    ],
)
def test_ray_cluster_address_comes_from_the_option_else_the_environment(option: str | None, environ: dict[str, str],
                                                                        expected: RayTarget | None) -> None:
    assert requested_target(option, environ) == expected


@pytest.mark.parametrize(("address", "expected"), [("10.0.0.5:6379", ("10.0.0.5", 6379)), ("head:1", ("head", 1)),
                                                   ("[::1]:6379", ("::1", 6379))])
def test_ray_cluster_address_is_host_and_port(address: str, expected: tuple[str, int]) -> None:
    assert split_address(RayTarget(address, "--ray-address")) == expected


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("headnode", "expected HOST:PORT of the Ray head's GCS"),
        (":6379", "expected HOST:PORT"),
        ("head:0", "port 1-65535"),
        ("head:65536", "port 1-65535"),
        ("head:port", "expected HOST:PORT"),
        ("auto", "expected HOST:PORT"),
        ("my head:6379", "expected HOST:PORT"),
        ("ray://head:10001", "Ray Client addresses (ray://...) are not supported"),
    ],
)
def test_malformed_ray_cluster_address_is_refused_naming_it(address: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        split_address(RayTarget(address, "$RAY_ADDRESS"))
    assert str(err.value).startswith(f"$RAY_ADDRESS={address!r}: ") and message in str(err.value)


def test_unreachable_ray_cluster_fails_at_once_naming_the_address() -> None:
    port = closed_port()
    t0 = time.monotonic()
    with pytest.raises(RayClusterError, match=rf"--ray-address=127.0.0.1:{port}: cannot reach a Ray head there: "
                                              r"Connection refused\. Start one with `ray start --head"):
        check_reachable(RayTarget(f"127.0.0.1:{port}", "--ray-address"))
    assert time.monotonic() - t0 < 2
    with pytest.raises(RayClusterError, match="cannot resolve host 'no-such-host.invalid'"):
        check_reachable(RayTarget("no-such-host.invalid:6379", "--ray-address"))


def test_a_port_that_is_no_ray_head_fails_within_the_probe_timeout() -> None:
    with socket.socket() as server:  # accepts connections, never answers: ray.init alone would wait for minutes
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        t0 = time.monotonic()
        target = RayTarget(address, "--ray-address")
        check_address(target, {})  # the port answers ...
        with pytest.raises(RayClusterError, match=rf"--ray-address={address}: no answer from the cluster within 3s"):
            probe(target, timeout=3)  # ... but no Ray GCS behind it
        assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("key", ["init-args-num-cpus", "init-args-num-gpus"])
def test_ray_cluster_refuses_init_args_before_connecting(key: str) -> None:
    with pytest.raises(ValueError, match=rf"--federation-config {key}=2: not allowed with a Ray cluster \(--ray-address\): "
                                         r"Ray refuses num_cpus/num_gpus .* `ray start --num-cpus N`"):
        check_address(RayTarget("127.0.0.1:1", "--ray-address"), {key: "2"})


@pytest.mark.parametrize(("cpus", "gpus", "actors"), [(1, 0, 5), (2, 0, 2), (4, 0, 1), (8, 0, 0), (1, 0.5, 2), (1, 1, 1)])
def test_ray_cluster_actors_fit_per_node_as_flower_counts_them(cpus: float, gpus: float, actors: int) -> None:
    cluster = RayCluster(RayTarget("h:1", "--ray-address"), "2.55.1", (RayNode("a", "10.0.0.1", 1, 0), RayNode("b", "10.0.0.2", 4, 1)))
    assert cluster.actors(cpus, gpus) == actors
    settings = {"client-resources-num-cpus": str(cpus), "client-resources-num-gpus": str(gpus)}
    if actors:
        assert check_fits(cluster, settings) == actors
    else:
        with pytest.raises(ValueError, match=r"client-resources-num-cpus=8 client-resources-num-gpus=0: no node of the Ray "
                                             r"cluster at h:1 \(--ray-address\) fits one client \(1 CPUs/0 GPUs, 4 CPUs/1 GPUs\)"):
            check_fits(cluster, settings)


def test_ray_cluster_node_problems_name_what_a_client_app_would_miss() -> None:
    assert RayNode("a", "10.0.0.1", 1, 0).problems() == []
    broken = RayNode("a", "10.0.0.1", 1, 0, "w1", "ModuleNotFoundError: No module named 'crlsc_fl'", ("/data",), shared=False)
    assert broken.problems() == [
        "cannot import the ClientApp (ModuleNotFoundError: No module named 'crlsc_fl'): install this code there (pip install -e .)",
        "has no /data",
    ]
    assert "one directory shared by all nodes" in RayNode("a", "10.0.0.1", 1, 0, shared=False).problems()[0]


def test_ray_cluster_driver_env_hands_on_the_address_and_the_workers_paths() -> None:
    env = driver_env("10.0.0.5:6379", {"CRLSC_STATE_DIR": "/shared/state"}, environ={})
    assert env["RAY_ADDRESS"] == "10.0.0.5:6379"
    assert json.loads(env[JOB_CONFIG_ENV]) == {"runtime_env": {"env_vars": {"CRLSC_STATE_DIR": "/shared/state"}}}
    submitted = {JOB_CONFIG_ENV: json.dumps({"runtime_env": {"pip": ["x"], "env_vars": {"A": "1"}}, "metadata": {"m": "1"}})}
    merged = json.loads(driver_env("h:1", {"CRLSC_STATE_DIR": "/s"}, environ=submitted)[JOB_CONFIG_ENV])
    assert merged == {"runtime_env": {"pip": ["x"], "env_vars": {"A": "1", "CRLSC_STATE_DIR": "/s"}}, "metadata": {"m": "1"}}


def test_ray_cluster_workers_get_the_state_root_the_server_uses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRLSC_STATE_DIR", raising=False)
    monkeypatch.setenv("CRLSC_CACHE_DIR", str(tmp_path / "cache"))
    assert worker_env({"CRLSC_DATA_DIR": "/data"}) == {"CRLSC_DATA_DIR": "/data",
                                                      "CRLSC_STATE_DIR": str(tmp_path / "cache" / "device-state")}
    assert worker_env({"CRLSC_STATE_DIR": "/shared/state"}) == {"CRLSC_STATE_DIR": "/shared/state"}


@pytest.mark.parametrize(
    ("argv", "environ", "code", "message"),
    [
        (["--ray-address", "127.0.0.1:{port}"], {}, 3, "error: --ray-address=127.0.0.1:{port}: cannot reach a Ray head there"),
        ([], {"RAY_ADDRESS": "127.0.0.1:{port}"}, 3, "error: $RAY_ADDRESS=127.0.0.1:{port}: cannot reach a Ray head there"),
        (["--ray-address", "head"], {}, 2, "error: --ray-address='head': expected HOST:PORT"),
        (["--ray-address", "127.0.0.1:{port}", "--federation-config", "init-args-num-cpus=2"], {}, 2,
         "error: --federation-config init-args-num-cpus=2: not allowed with a Ray cluster"),
    ],
)
def test_bad_ray_cluster_exits_before_data_or_flower(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str], argv: list[str],
                                                     environ: dict[str, str], code: int, message: str) -> None:
    port = closed_port()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value.format(port=port))
    monkeypatch.setattr("crlsc_fl.launcher.scenario.check_data", lambda cfg: pytest.fail("data loaded before the Ray check"))
    scenario = synthetic_scenario(tmp_path / "s.toml")
    assert launch.main([str(scenario), *(a.format(port=port) for a in argv), "--app", str(tmp_path)]) == code
    assert message.format(port=port) in capsys.readouterr().err
    assert not (tmp_path / ".flwr").exists()
