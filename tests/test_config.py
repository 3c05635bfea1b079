"""The scenario config: pyproject defaults, shipped scenarios, and clear errors for bad keys."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from crlsc_fl.config import ConfigError, ScenarioConfig, flatten, from_flat, load_scenario

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_app_config_equals_the_schema_defaults() -> None:
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert flatten(table) == ScenarioConfig().to_flat()


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_scenario_is_valid(path: Path) -> None:
    cfg = load_scenario(path)
    assert cfg.scenario.name == path.stem


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"train.bogus": 1}, "unknown scenario key 'train.bogus'; valid keys in \\[train\\]"),
        ({"nonsense.key": 1}, "valid keys \\(tables\\)"),
        ({"train.lr": -1.0}, "train.lr=-1.0 out of range"),
        ({"train.local-epochs": "2"}, "train.local-epochs='2' has type str; expected int"),
        ({"scenario.topologies": "local,star"}, "scenario.topologies='star' is not allowed; valid: local, cloud-edge"),
        ({"devices.architectures": "resnet18:0.5"}, "weights must be > 0 and sum to 1"),
        ({"devices.architectures": "vgg:1"}, "devices.architectures='vgg' is not allowed"),
        ({"kb.source": "image"}, "kb.source='image' needs the server model's image tower, but kb.server-model='minilm'"),
        ({"kb.source": "video"}, "kb.source='video' is not allowed; valid: text, image, random"),
        ({"kb.server-model": "efficientnet-lite2", "kb.source": "image", "kb.dim": 128, "kb.m": 48}, "must divide the vector dimension 128"),
        ({"devices.width": 0.0}, "devices.width=0.0 out of range \\(0"),
        ({"devices.architectures": "resnet18@0:1"}, "devices.architectures: width '0' of 'resnet18' out of range \\(0, 4\\]"),
        ({"devices.architectures": "resnet18@5:1"}, "width '5' of 'resnet18' out of range \\(0, 4\\] \\('arch:fraction' or 'arch@width"),
        ({"devices.architectures": "resnet18@wide:1"}, "width 'wide' of 'resnet18' is not a number"),
        ({"devices.architectures": "resnet18@0.5:0.5,resnet18:0.5"}, "names 'resnet18' twice; give each architecture once"),
        ({"devices.architectures": "resnet18@0.5:0.6"}, "devices.architectures='resnet18@0.5:0.6': weights must be > 0 and sum to 1"),
        ({"devices.architectures": "vgg@0.5:1"}, "devices.architectures='vgg' is not allowed; valid: resnet18, resnet34, resnet50"),
        ({"scenario.keep-device-state": "yes"}, "scenario.keep-device-state='yes' has type str; expected bool"),
        ({"train.kb-method": "crlsc-grounded"}, "needs anchors to ground the devices: set kb.anchors > 0"),
        ({"train.kb-method": "byol"}, "train.kb-method='byol' is not allowed; valid: crlsc, crlsc-grounded"),
        ({"grounding.targets": "hard"}, "grounding.targets='hard' is not allowed; valid: soft, onehot"),
        ({"topology.peer-knowledge": "weights"}, "topology.peer-knowledge='weights' is not allowed; valid: pkb, anchor-pkb, random-anchor-pkb"),
        ({"topology.peer-knowledge": "anchor-pkb"}, "topology.peer-knowledge='anchor-pkb' keys peers' knowledge by the anchors: it needs train.kb-method='crlsc-grounded' \\(got 'crlsc'\\)"),
        ({"topology.graph": "k-regular", "topology.degree": 3, "devices.num-devices": 5}, "impossible for a k-regular"),
        ({"kb.m": 7}, "must divide the vector dimension 384"),
        ({"data.dataset": "imagenet"}, "data.dataset='imagenet' is not allowed; valid: cifar10, cifar100"),
        ({"fusion.weights": "max"}, "fusion.weights='max' is not allowed; valid: softmax, raw"),
    ],
)
def test_bad_values_fail_with_the_key_value_and_allowed(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_flat(values)


def test_bad_scenario_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[train]\nlocal-epochs = 0\n")
    with pytest.raises(ConfigError, match="bad.toml: train.local-epochs=0 out of range"):
        load_scenario(path)
    path.write_text("[train\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_scenario(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_scenario(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("text", "default_width", "expected"),
    [
        ("resnet18:0.6,resnet34:0.4", 1.0, {"resnet18": (1.0, 0.6), "resnet34": (1.0, 0.4)}),
        ("resnet18@0.25:0.6,resnet34:0.3,resnet50@0.5:0.1", 0.75,
         {"resnet18": (0.25, 0.6), "resnet34": (0.75, 0.3), "resnet50": (0.5, 0.1)}),
        (" resnet50 @ 2 : 1 ", 1.0, {"resnet50": (2.0, 1.0)}),
    ],
)
def test_architecture_entries_carry_their_width_or_the_default(text: str, default_width: float, expected: dict) -> None:
    devices = from_flat({"devices.architectures": text, "devices.width": default_width}).devices
    assert devices.architecture_mix() == expected
