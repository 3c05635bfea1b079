"""The scenario config: shipped scenarios, round trips, and clear errors for bad keys."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crlsc_fl.scenario.config import ConfigError, from_flat, load_scenario

ROOT = Path(__file__).resolve().parents[2]


def test_flat_config_round_trips() -> None:
    cfg = from_flat({"devices.architectures": "resnet18@0.25:0.6,resnet50:0.4", "faults.corrupt-kb": "1:flip, 3:wrong-dim",
                     "scenario.topologies": "p2p, local"})
    assert cfg.scenario.topologies == ("p2p", "local") and cfg.faults.corrupt_kb == {1: "flip", 3: "wrong-dim"}
    assert from_flat(cfg.to_flat()) == cfg


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_scenario_is_valid(path: Path) -> None:
    cfg = load_scenario(path)
    assert cfg.scenario.name == path.stem


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"train.bogus": 1}, "unknown scenario key 'train.bogus'; valid keys in [train]: batch-size, lr, weight-decay"),
        ({"nonsense.key": 1}, "unknown scenario key 'nonsense.key'; valid tables: scenario, data, devices"),
        ({"train.lr": -1.0}, "train.lr=-1.0: Input should be greater than 0"),
        ({"train.local-epochs": "2"}, "train.local-epochs='2': Input should be a valid integer"),
        ({"train.local-epochs": 2.0}, "train.local-epochs=2.0: Input should be a valid integer"),
        ({"train.seed": 3}, "unknown scenario key 'train.seed'"),  # set per device, not by a scenario
        ({"scenario.topologies": "local,star"}, "scenario.topologies='local,star': 'star' is not allowed; valid: cloud-edge, fedavg"),
        ({"scenario.topologies": " , "}, "scenario.topologies=' , ': empty; give a comma-separated list"),
        ({"scenario.name": "a/b"}, "scenario.name='a/b': must be a non-empty name without slashes or spaces"),
        ({"devices.architectures": "resnet18:0.5"}, "devices.architectures='resnet18:0.5': weights must be > 0 and sum to 1"),
        ({"devices.architectures": "vgg:1"}, "devices.architectures='vgg:1': 'vgg' is not allowed; valid: resnet18, resnet34, resnet50"),
        ({"devices.profiles": "low:0.5,turbo:0.5"}, "devices.profiles='low:0.5,turbo:0.5': 'turbo' is not allowed; valid: low, mid, high"),
        ({"kb.source": "image"}, "kb: source='image' needs the server model's image tower, but server-model='minilm' has only text"),
        ({"kb.source": "video"}, "kb.source='video': Input should be 'text', 'image' or 'random'"),
        ({"kb.server-model": "efficientnet-lite2", "kb.source": "image", "kb.dim": 128, "kb.m": 48}, "m=48 must divide the vector dimension 128"),
        ({"kb.server-model": "clip"}, "kb.server-model='clip': 'clip' is not allowed; valid:"),
        ({"pkb.nbits": 17}, "pkb.nbits=17: Input should be less than or equal to 16"),
        ({"devices.width": 0.0}, "devices.width=0.0: Input should be greater than 0"),
        ({"devices.architectures": "resnet18@0:1"}, "width 0.0 of 'resnet18' out of range (0, 4]"),
        ({"devices.architectures": "resnet18@5:1"}, "width 5.0 of 'resnet18' out of range (0, 4] ('arch:fraction' or 'arch@width"),
        ({"devices.architectures": "resnet18@wide:1"}, "width of 'resnet18' is 'wide', not a number"),
        ({"devices.architectures": "resnet18@0.5:0.5,resnet18:0.5"}, "names 'resnet18' twice; give each architecture once"),
        ({"devices.architectures": "resnet18@0.5:0.6"}, "devices.architectures='resnet18@0.5:0.6': weights must be > 0 and sum to 1"),
        ({"scenario.keep-device-state": "yes"}, "scenario.keep-device-state='yes': Input should be a valid boolean"),
        ({"train.kb-method": "crlsc-grounded"}, "needs anchors to ground the devices: set kb.anchors > 0"),
        ({"train.kb-method": "byol"}, "train.kb-method='byol': 'byol' is not allowed; valid: crlsc, crlsc-grounded"),
        ({"grounding.targets": "hard"}, "grounding.targets='hard': Input should be 'soft' or 'onehot'"),
        ({"topology.peer-knowledge": "weights"}, "topology.peer-knowledge='weights': Input should be 'pkb', 'anchor-pkb' or 'random-anchor-pkb'"),
        ({"topology.peer-knowledge": "anchor-pkb"},
         "topology.peer-knowledge='anchor-pkb' keys peers' knowledge by the anchors: it needs train.kb-method='crlsc-grounded' (got 'crlsc')"),
        ({"topology.graph": "star"}, "topology.graph='star': 'star' is not allowed; valid: erdos-renyi, k-regular, ring, small-world"),
        ({"topology.hybrid-mentors": "resnet50,vgg"}, "topology.hybrid-mentors='resnet50,vgg': 'vgg' is not allowed"),
        ({"topology.graph": "k-regular", "topology.degree": 3, "devices.num-devices": 5},
         "topology.degree=3 impossible for a k-regular graph on 5 devices"),
        ({"kb.m": 7}, "m=7 must divide the vector dimension 384"),
        ({"data.dataset": "imagenet"}, "data.dataset='imagenet': 'imagenet' is not allowed; valid: cifar10, cifar100"),
        ({"fusion.weights": "max"}, "fusion.weights='max': Input should be 'softmax' or 'raw'"),
        ({"stage2.channel": "laser"}, "stage2.channel='laser': 'laser' is not allowed; valid: awgn, bsc, ideal, rayleigh"),
        ({"stage2.channel": "bsc", "stage2.ber": 0.7}, "stage2.ber=0.7: out of range [0, 0.5]"),
        ({"faults.corrupt-kb": "3:melt"}, "faults.corrupt-kb.3='melt': Input should be 'flip' or 'wrong-dim'"),
        ({"faults.corrupt-kb": "x:flip"}, "faults.corrupt-kb='x:flip': 'x:flip' is not 'device:mode'"),
        ({"faults.corrupt-kb": "200:flip"}, "faults.corrupt-kb names devices [200]; valid ids: 0..99"),
        ({"faults.dropout": 1.0}, "faults.dropout=1.0: Input should be less than 1"),
    ],
)
def test_bad_values_fail_with_the_key_value_and_allowed(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        from_flat(values)


def test_bad_scenario_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[train]\nlocal-epochs = 0\n")
    with pytest.raises(ConfigError, match="bad.toml: train.local-epochs=0: Input should be greater than or equal to 1"):
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
