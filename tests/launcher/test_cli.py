"""The command lines: ``crlsc-fl`` (console script), ``python -m crlsc_fl.launch|deploy``, and
the one flow behind ``run`` and ``deploy`` up to the point where Flower would start."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crlsc_fl import deploy, launch
from crlsc_fl.launcher.cli import COMMANDS, build_parser, plan_run
from crlsc_fl.launcher.keys import make_keys
from crlsc_fl.launcher.modes import DEPLOYMENT, SIMULATION, Federation
from crlsc_fl.scenario.config import from_flat

SCRIPT = Path(sys.executable).parent / "crlsc-fl"  # installed by `pip install -e .` into the venv


def crlsc_fl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed ``crlsc-fl`` console script."""
    assert SCRIPT.is_file(), f"{SCRIPT} missing: install the project with pip install -e ."
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def synthetic_scenario(path: Path, devices: int = 3) -> Path:
    path.write_text(f'[scenario]\nname = "x"\nrounds = 2\n\n[devices]\nnum-devices = {devices}\n\n'
                    '[data]\ndataset = "synthetic"\nsamples-per-device = 16\ntest-samples = 10\n')
    return path


def test_help_lists_every_subcommand(tmp_path: Path) -> None:
    result = crlsc_fl("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("run", "deploy", "compare", "stage2", "keys"):
        assert f"\n  {name} " in result.stdout, name
    assert "python -m crlsc_fl.launch" in result.stdout


def test_run_with_a_bad_scenario_exits_2_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nname = "x"\nrounds = 0\n')
    result = crlsc_fl("run", str(bad), "--app", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "scenario.rounds" in result.stderr and result.stderr.startswith("error: ")
    assert not (tmp_path / ".flwr").exists()  # nothing started


@pytest.mark.parametrize(("args", "message"), [((), "give a COMMAND, one of: run, deploy, compare, stage2, keys"),
                                               (("launch",), "invalid choice: 'launch'")])
def test_a_missing_or_unknown_command_exits_2_naming_the_choices(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = crlsc_fl(*args, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr


def test_subcommands_parse_with_their_own_parser_under_the_crlsc_fl_name(tmp_path: Path) -> None:
    result = crlsc_fl("compare", str(tmp_path / "no-run"), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2 and "usage: crlsc-fl compare" in result.stderr
    assert "metrics" in result.stderr


@pytest.mark.parametrize(("federation", "module_prog"), [(SIMULATION, "python -m crlsc_fl.launch"),
                                                         (DEPLOYMENT, "python -m crlsc_fl.deploy")])
def test_crlsc_fl_and_python_m_forms_share_one_parser(federation: Federation, module_prog: str) -> None:
    name = "run" if federation is SIMULATION else "deploy"
    ours, module = build_parser(federation, f"crlsc-fl {name}"), build_parser(federation, module_prog)
    assert [a.option_strings for a in ours._actions] == [a.option_strings for a in module._actions]
    assert COMMANDS[name].load() is (launch.main if federation is SIMULATION else deploy.main)


def test_invalid_scenario_exits_2_before_starting_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nname = "x"\nrounds = 0\n')
    assert launch.main([str(bad), "--app", str(tmp_path)]) == 2
    assert "scenario.rounds" in capsys.readouterr().err
    assert deploy.main([str(bad), "--app", str(tmp_path)]) == 2
    assert deploy.main([str(tmp_path / "missing.toml"), "--app", str(tmp_path)]) == 2
    ok = tmp_path / "ok.toml"
    ok.write_text('[scenario]\nname = "x"\n')
    assert deploy.main([str(ok), "--set", "no.such-key=1", "--app", str(tmp_path)]) == 2
    assert "no.such-key" in capsys.readouterr().err
    assert not (tmp_path / ".flwr").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give either a scenario file or --resume RESULTS_DIR"),
        (["SCENARIO", "--resume", "x"], "give either a scenario file or --resume RESULTS_DIR"),
        (["--resume", "no-such-run"], "--resume {cwd}/no-such-run: {cwd}/no-such-run/config.json not found"),
        (["SCENARIO", "--num-supernodes", "-1"], "--num-supernodes must be >= 1, got -1"),
        (["SCENARIO", "--federation-config", "gpus"], "--federation-config item 'gpus' is not of the form key=value"),
        (["SCENARIO", "--set", "scenario.rounds"], "override 'scenario.rounds' is not of the form key=value"),
    ],
)
def test_bad_run_options_exit_2_naming_option_and_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str], argv: list[str],
                                                         message: str) -> None:
    monkeypatch.chdir(tmp_path)
    scenario = synthetic_scenario(tmp_path / "s.toml")
    args = [str(scenario) if a == "SCENARIO" else a for a in argv]
    assert launch.main([*args, "--app", str(tmp_path)]) == 2
    assert message.format(cwd=tmp_path.resolve()) in capsys.readouterr().err
    assert not (tmp_path / ".flwr").exists()


def test_deploy_with_too_few_supernodes_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = synthetic_scenario(tmp_path / "s.toml")
    assert deploy.main([str(scenario), "--supernodes", "-2", "--app", str(tmp_path)]) == 2
    assert "--supernodes must be >= 1, got -2" in capsys.readouterr().err


def test_simulation_plan_sets_the_simulated_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    scenario = synthetic_scenario(tmp_path / "s.toml", devices=4)
    args = build_parser(SIMULATION, "t").parse_args([str(scenario), "--federation-config", "client-resources-num-cpus=2",
                                                      "--timeout", "9", "--app", str(tmp_path)])
    plan = plan_run(SIMULATION, args)
    assert (plan.mode, plan.simulation, plan.supernodes, plan.timeout) == ("sim", True, 0, 9.0)
    assert plan.flwr_run_args == ["--federation-config", "num-supernodes=4 client-resources-num-cpus=2"]
    assert plan.project == tmp_path.resolve() and plan.cfg.scenario.results_dir == str(tmp_path / "results")
    assert plan.run_config.parent == plan.tmp and plan.tmp.is_dir()  # merged copy (absolute paths), kept for the run
    shutil.rmtree(plan.tmp)


def test_deployment_plan_starts_supernodes_and_rounds_override_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    scenario = synthetic_scenario(tmp_path / "s.toml", devices=3)
    args = build_parser(DEPLOYMENT, "t").parse_args([str(scenario), "--supernodes", "2", "--rounds", "1",
                                                      "--set", "scenario.rounds=5", "--connect-timeout", "7"])
    plan = plan_run(DEPLOYMENT, args)
    assert (plan.mode, plan.simulation, plan.supernodes, plan.connect_timeout) == ("deploy", False, 2, 7.0)
    assert plan.flwr_run_args == [] and plan.cfg.scenario.rounds == 1
    assert plan.security is not None and not plan.security.insecure and plan.security.keys is None  # fresh keys per run
    assert "note: 2 SuperNodes but devices.num-devices=3 in the scenario" in capsys.readouterr().err
    shutil.rmtree(plan.tmp)


def test_deploy_tls_plan_checks_the_given_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    make_keys(tmp_path / "keys", 3)
    scenario = synthetic_scenario(tmp_path / "s.toml", devices=3)
    plan = plan_run(DEPLOYMENT, build_parser(DEPLOYMENT, "t").parse_args([str(scenario), "--keys", "keys"]))
    assert plan.security is not None and plan.security.keys is not None
    assert plan.security.keys.directory == (tmp_path / "keys").resolve() and len(plan.security.keys.nodes) == 3
    shutil.rmtree(plan.tmp)


def test_deploy_tls_bad_keys_exit_2_before_starting_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_keys(tmp_path / "keys", 2)
    scenario = synthetic_scenario(tmp_path / "s.toml", devices=3)
    assert deploy.main([str(scenario), "--keys", str(tmp_path / "keys"), "--app", str(tmp_path)]) == 2
    assert f"error: SuperNode 2 private key {tmp_path.resolve()}/keys/node-2.key: no such file" in capsys.readouterr().err
    (tmp_path / "keys" / "server.key").chmod(0o644)
    assert deploy.main([str(scenario), "--supernodes", "2", "--keys", str(tmp_path / "keys"), "--app", str(tmp_path)]) == 2
    assert "server.key: readable or writable by other users (mode 0644)" in capsys.readouterr().err
    assert not (tmp_path / ".flwr").exists()


def test_deploy_tls_insecure_and_keys_exclude_each_other(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = synthetic_scenario(tmp_path / "s.toml")
    with pytest.raises(SystemExit) as exit_:
        deploy.main([str(scenario), "--insecure", "--keys", str(tmp_path), "--app", str(tmp_path)])
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("accelerator", "cuda_available", "extra", "expected"),
    [
        ("cpu", True, None, "num-supernodes=4 client-resources-num-cpus=1"),
        ("auto", False, None, "num-supernodes=4 client-resources-num-cpus=1"),
        ("auto", True, None, "num-supernodes=4 client-resources-num-cpus=1 client-resources-num-gpus=0.25"),
        ("cuda", True, "devices.gpus-per-device=0.5", "num-supernodes=4 client-resources-num-cpus=1 client-resources-num-gpus=0.5"),
    ],
)
def test_accelerator_cuda_asks_flower_for_a_gpu_fraction_per_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, accelerator: str, cuda_available: bool, extra: str | None, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("torch.cuda.is_available", lambda: cuda_available)
    scenario = synthetic_scenario(tmp_path / "s.toml", devices=4)
    sets = ["--set", f"devices.accelerator='{accelerator}'"] + (["--set", extra] if extra else [])
    plan = plan_run(SIMULATION, build_parser(SIMULATION, "t").parse_args([str(scenario), *sets, "--app", str(tmp_path)]))
    assert plan.flwr_run_args == ["--federation-config", expected]
    assert plan.cfg.devices.accelerator == accelerator
    shutil.rmtree(plan.tmp)


def test_accelerator_federation_config_option_still_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    scenario = synthetic_scenario(tmp_path / "s.toml", devices=2)
    argv = [str(scenario), "--set", "devices.accelerator='cuda'", "--federation-config", "client-resources-num-gpus=1",
            "--app", str(tmp_path)]
    plan = plan_run(SIMULATION, build_parser(SIMULATION, "t").parse_args(argv))
    assert plan.flwr_run_args == ["--federation-config", "num-supernodes=2 client-resources-num-cpus=1 client-resources-num-gpus=1"]
    shutil.rmtree(plan.tmp)


@pytest.mark.parametrize("main", [launch.main, deploy.main])
def test_accelerator_cuda_without_cuda_exits_2_before_starting_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], main
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    scenario = synthetic_scenario(tmp_path / "s.toml")
    assert main([str(scenario), "--set", "devices.accelerator='cuda'", "--app", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: devices.accelerator='cuda' but CUDA is not available: ") and "use 'auto' or 'cpu'" in err
    assert not (tmp_path / ".flwr").exists()


@pytest.mark.parametrize(("accelerator", "expected"), [("cuda", " client-resources-num-gpus=0.25"), ("cpu", "")])
def test_accelerator_on_a_ray_cluster_the_nodes_gpus_count_not_this_machines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, accelerator: str, expected: str
) -> None:
    """The launcher's machine need not hold the GPUs of a Ray cluster: 'cuda' is asked for
    (the cluster check then counts the nodes' GPUs), 'auto' is refused as undecidable here."""
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    scenario = synthetic_scenario(tmp_path / "s.toml", devices=4)
    args = build_parser(SIMULATION, "t").parse_args([str(scenario), "--ray-address", "10.0.0.1:6379"])
    cfg = from_flat({"devices.accelerator": accelerator})
    assert SIMULATION.plan_options(args, 4, cfg) == {
        "flwr_run_args": ["--federation-config", f"num-supernodes=4 client-resources-num-cpus=1{expected}"]}
    with pytest.raises(ValueError, match=r"devices\.accelerator='auto' on a Ray cluster: .*set 'cuda' .* or 'cpu'"):
        SIMULATION.plan_options(args, 4, from_flat({"devices.accelerator": "auto"}))
