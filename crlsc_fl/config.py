"""The one validated configuration object of a federated run.

A scenario TOML file (``scenarios/*.toml``) holds tables whose keys flatten to dotted names,
e.g. ``[train] local-epochs = 1`` -> ``train.local-epochs``. Flower passes them to the
ServerApp as ``context.run_config`` (every key must also appear, with its default, under
``[tool.flwr.app.config]`` in pyproject.toml; a test keeps the two equal).
:func:`load_scenario` and :func:`from_flat` validate every key and value and raise
:class:`ConfigError` naming the key, the bad value and what is allowed, before any work.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from crlsc_fl.kb.mentor import MentorConfig
from crlsc_fl.methods.grounded import GroundingConfig
from crlsc_fl.models.server_models import SERVER_MODELS
from crlsc_fl.models.modules.kb_fusion import FusionConfig
from crlsc_fl.registry import UnknownNameError


class ConfigError(ValueError):
    """A scenario key or value is invalid; the message says which and what is allowed."""


TOPOLOGIES = ("local", "cloud-edge", "p2p", "hybrid", "fedavg")
GRAPHS = ("ring", "k-regular", "small-world", "erdos-renyi")
PARTITIONS = ("iid", "dirichlet")
STEMS = ("cifar", "imagenet")
ARCHITECTURES = ("resnet18", "resnet34", "resnet50")
P2P_WARMUPS = ("local", "skb")
# what a device returns for its peers (p2p neighbours, hybrid mentees): the paper's PKB for
# retrieval, its anchor-keyed PKB (grounding targets), or random keys of that shape (control)
PEER_KNOWLEDGE = ("pkb", "anchor-pkb", "random-anchor-pkb")
KB_CORRUPTIONS = ("flip", "wrong-dim")
# Simulated device throughput (training images per second) per compute profile; it only
# turns counted work into simulated seconds, real compute is whatever this machine does.
COMPUTE_PROFILES = {"low": 50.0, "mid": 200.0, "high": 800.0}


def _choice(key: str, value: str, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; valid: {', '.join(allowed)}")


def _range(key: str, value: float, low: float | None = None, high: float | None = None, *, open_low: bool = False) -> None:
    too_low = low is not None and (value <= low if open_low else value < low)
    too_high = high is not None and value > high
    if too_low or too_high:
        left = "(" if open_low else "["
        raise ConfigError(f"{key}={value!r} out of range {left}{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]")


def parse_mixture(key: str, text: str, allowed: tuple[str, ...] | list[str], shown: str | None = None) -> dict[str, float]:
    """Parse ``"a:0.6,b:0.4"`` into {name: weight}; weights must be > 0 and sum to 1.
    Errors quote ``shown`` (the text as the user wrote it) when given, else ``text``."""
    shown = text if shown is None else shown
    mixture: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, weight = item.partition(":")
        _choice(key, name.strip(), allowed)
        try:
            mixture[name.strip()] = float(weight) if sep else 1.0
        except ValueError:
            raise ConfigError(f"{key}: weight {weight!r} of {name!r} is not a number (format 'name:0.5,other:0.5')") from None
    if not mixture:
        raise ConfigError(f"{key}={shown!r} is empty; format 'name:0.5,other:0.5' with names from {', '.join(allowed)}")
    if any(w <= 0 for w in mixture.values()) or abs(sum(mixture.values()) - 1.0) > 1e-6:
        raise ConfigError(f"{key}={shown!r}: weights must be > 0 and sum to 1")
    return mixture


ARCHITECTURE_FORMAT = "'arch:fraction' or 'arch@width:fraction', e.g. 'resnet18@0.25:0.6,resnet50:0.4'"


def parse_architectures(key: str, text: str, default_width: float) -> dict[str, tuple[float, float]]:
    """Parse ``"resnet18@0.25:0.6,resnet50:0.4"`` into {arch: (width, fraction)}.

    ``@width`` is the channel width multiplier of that architecture, in (0, 4]; an entry
    without it gets ``default_width`` (``devices.width``). Each architecture appears once,
    so every device of one architecture has the same shape (``fedavg`` averages per
    architecture). Fractions follow :func:`parse_mixture`."""
    widths: dict[str, float] = {}
    plain = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, fraction = item.partition(":")
        arch, at, width_text = (part.strip() for part in name.partition("@"))
        _choice(key, arch, ARCHITECTURES)
        if arch in widths:
            raise ConfigError(f"{key}={text!r} names {arch!r} twice; give each architecture once ({ARCHITECTURE_FORMAT})")
        try:
            width = float(width_text) if at else default_width
        except ValueError:
            raise ConfigError(f"{key}: width {width_text!r} of {arch!r} is not a number ({ARCHITECTURE_FORMAT})") from None
        if not 0 < width <= 4:
            raise ConfigError(f"{key}: width {width_text!r} of {arch!r} out of range (0, 4] ({ARCHITECTURE_FORMAT})")
        widths[arch] = width
        plain.append(f"{arch}{sep}{fraction}")
    mixture = parse_mixture(key, ",".join(plain), ARCHITECTURES, shown=text)
    return {arch: (widths[arch], fraction) for arch, fraction in mixture.items()}


def parse_list(key: str, text: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    items = tuple(filter(None, (part.strip() for part in text.split(","))))
    if not items:
        raise ConfigError(f"{key}={text!r} is empty; give a comma-separated list of {', '.join(allowed)}")
    for item in items:
        _choice(key, item, allowed)
    return items


@dataclass(frozen=True)
class ScenarioSection:
    name: str = "quick"
    topologies: str = "local,cloud-edge,p2p,hybrid,fedavg"
    rounds: int = 2
    seed: int = 0
    results_dir: str = "results"
    # messages in flight at once: bounds the payloads (weights) held by Flower and the server
    max_in_flight: int = 20
    # a round in which fewer of the devices sent a message reply successfully fails the run
    # (devices that dropped out were not sent one and do not count, see FaultsSection)
    min_success_fraction: float = 0.9
    # seconds to wait for each device's reply; a device silent that long (or whose node went
    # offline) counts as failed
    reply_timeout: float = 3600.0
    # results directory of an interrupted or failed run to continue ("" = a new run); set by
    # `python -m crlsc_fl.launch --resume DIR`
    resume: str = ""
    # keep every topology's device state (encoders, received KBs) when the run completes; by
    # default a topology's state is removed once its last round and stage 2 are done
    keep_device_state: bool = False

    def validate(self) -> None:
        parse_list("scenario.topologies", self.topologies, TOPOLOGIES)
        _range("scenario.max-in-flight", self.max_in_flight, 0)
        _range("scenario.min-success-fraction", self.min_success_fraction, 0, 1)
        _range("scenario.reply-timeout", self.reply_timeout, 0, open_low=True)
        _range("scenario.rounds", self.rounds, 1)
        if not self.name or any(c in self.name for c in "/\\ "):
            raise ConfigError(f"scenario.name={self.name!r} must be a non-empty name without slashes or spaces")

    @property
    def topology_list(self) -> tuple[str, ...]:
        return parse_list("scenario.topologies", self.topologies, TOPOLOGIES)


@dataclass(frozen=True)
class DataSection:
    dataset: str = "cifar10"
    data_dir: str = ""
    partition: str = "iid"
    alpha: float = 0.5
    public_fraction: float = 0.1
    min_shard_size: int = 20
    samples_per_device: int = 0
    # the test subset every device is evaluated on (seeded: the same images for all)
    test_samples: int = 1000

    def validate(self) -> None:
        from crlsc_fl.data.datasets import DATASETS

        _choice("data.dataset", self.dataset, DATASETS.names())
        _choice("data.partition", self.partition, PARTITIONS)
        _range("data.alpha", self.alpha, 0, open_low=True)
        _range("data.public-fraction", self.public_fraction, 0, 0.9)
        _range("data.min-shard-size", self.min_shard_size, 2)
        _range("data.samples-per-device", self.samples_per_device, 0)
        _range("data.test-samples", self.test_samples, 10)


@dataclass(frozen=True)
class DevicesSection:
    num_devices: int = 100
    architectures: str = "resnet18:0.6,resnet34:0.3,resnet50:0.1"
    stem: str = "imagenet"
    profiles: str = "low:0.3,mid:0.5,high:0.2"
    # channel width multiplier of every device's ResNet (1.0 = torchvision's; 0.25 trains
    # ~12x faster on a CPU while ResNet-18/34/50 still differ in depth and capacity);
    # an entry 'arch@width:fraction' of `architectures` sets its own
    width: float = 1.0

    def validate(self) -> None:
        _range("devices.num-devices", self.num_devices, 1, 10000)
        _range("devices.width", self.width, 0, 4, open_low=True)
        self.architecture_mix()
        parse_mixture("devices.profiles", self.profiles, tuple(COMPUTE_PROFILES))
        _choice("devices.stem", self.stem, STEMS)

    def architecture_mix(self) -> dict[str, tuple[float, float]]:
        """{arch: (width, fraction)} of ``architectures``, widths defaulting to ``width``."""
        return parse_architectures("devices.architectures", self.architectures, self.width)


KB_METHODS = ("crlsc", "crlsc-grounded")


@dataclass(frozen=True)
class TrainSection:
    local_epochs: int = 1
    batch_size: int = 32
    lr: float = 0.005
    temperature: float = 0.1
    # the method of devices that train with a KB (SKB or peers' PKBs): the paper's ``crlsc``
    # or ``crlsc-grounded`` (anchor alignment, needs kb.anchors > 0)
    kb_method: str = "crlsc"

    def validate(self) -> None:
        _choice("train.kb-method", self.kb_method, KB_METHODS)
        _range("train.local-epochs", self.local_epochs, 1)
        _range("train.batch-size", self.batch_size, 2)
        _range("train.lr", self.lr, 0, open_low=True)
        _range("train.temperature", self.temperature, 0, open_low=True)


@dataclass(frozen=True)
class FusionSection(FusionConfig):
    """The fusion options of eq. 1-2 (:class:`FusionConfig` validates them on creation)."""

    def validate(self) -> None:
        pass


@dataclass(frozen=True)
class KBSection(MentorConfig):
    """The server's knowledge (:class:`MentorConfig` validates it on creation) plus the
    devices' PKB index settings."""

    pkb_index: str = "pq"
    pkb_m: int = 48
    pkb_nbits: int = 6
    pkb_samples: int = 0

    def validate(self) -> None:
        from crlsc_fl.kb.knowledge_base import KB_TYPES

        _choice("kb.pkb-index", self.pkb_index, KB_TYPES.names())
        for key, value in (("kb.m", self.m), ("kb.pkb-m", self.pkb_m)):
            _range(key, value, 1)
        for key, value in (("kb.nbits", self.nbits), ("kb.pkb-nbits", self.pkb_nbits)):
            _range(key, value, 1, 16)
        _range("kb.pkb-samples", self.pkb_samples, 0)

    def known_dim(self) -> int | None:
        """The SKB's dimension when it is known without loading the server model."""
        # models whose class states its dimension (MiniLM, EfficientNet-Lite); open_clip's
        # depends on the config and is known only once loaded
        return self.dim or getattr(SERVER_MODELS.get(self.server_model), "dim", None)


@dataclass(frozen=True)
class GroundingSection(GroundingConfig):
    """The anchor-alignment term of ``crlsc-grounded`` (:class:`GroundingConfig` validates it)."""

    def validate(self) -> None:
        pass


@dataclass(frozen=True)
class TopologySection:
    edges: int = 10
    graph: str = "ring"
    degree: int = 4
    rewire_p: float = 0.1
    edge_p: float = 0.05
    p2p_warmup: str = "local"
    hybrid_mentors: str = "resnet50,resnet34"
    peer_knowledge: str = "pkb"

    def validate(self) -> None:
        _range("topology.edges", self.edges, 1)
        _choice("topology.graph", self.graph, GRAPHS)
        _range("topology.degree", self.degree, 1)
        _range("topology.rewire-p", self.rewire_p, 0, 1)
        _range("topology.edge-p", self.edge_p, 0, 1, open_low=True)
        _choice("topology.p2p-warmup", self.p2p_warmup, P2P_WARMUPS)
        _choice("topology.peer-knowledge", self.peer_knowledge, PEER_KNOWLEDGE)
        parse_list("topology.hybrid-mentors", self.hybrid_mentors, ARCHITECTURES)


@dataclass(frozen=True)
class NetworkSection:
    """Simulated links per tier (Mbit/s and ms) to turn counted bytes into transfer time."""

    cloud_edge_mbps: float = 1000.0
    cloud_edge_latency_ms: float = 20.0
    edge_device_mbps: float = 100.0
    edge_device_latency_ms: float = 10.0
    d2d_mbps: float = 20.0
    d2d_latency_ms: float = 5.0

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            key = f"network.{f.name.replace('_', '-')}"
            _range(key, getattr(self, f.name), 0, open_low=f.name.endswith("mbps"))


@dataclass(frozen=True)
class EvalSection:
    knn_k: int = 20  # lightly uses 200 for a 50k bank; device banks hold a few hundred images
    knn_temperature: float = 0.1

    def validate(self) -> None:
        _range("eval.knn-k", self.knn_k, 1)
        _range("eval.knn-temperature", self.knn_temperature, 0, open_low=True)


@dataclass(frozen=True)
class StageTwoSection:
    """Stage 2 after each topology: ``devices`` devices (a seeded sample; 0 = off) train a
    VQ-VAE decoder on their frozen encoder and report PSNR/SSIM over ``channel``."""

    devices: int = 0
    layer: str = "layer3"
    num_codes: int = 256
    epochs: int = 2
    train_samples: int = 64
    eval_samples: int = 64
    channel: str = "awgn"
    snr_db: float = 10.0
    ber: float = 0.01

    def channel_params(self) -> dict[str, float]:
        return {"snr_db": self.snr_db} if self.channel in ("awgn", "rayleigh") else {"ber": self.ber} if self.channel == "bsc" else {}

    def validate(self) -> None:
        from crlsc_fl.models.encoders import FEATURE_LAYERS
        from crlsc_fl.stage2.channels import CHANNELS, build_channel

        _range("stage2.devices", self.devices, 0)
        _choice("stage2.layer", self.layer, FEATURE_LAYERS)
        _range("stage2.num-codes", self.num_codes, 2)
        _range("stage2.epochs", self.epochs, 1)
        _range("stage2.train-samples", self.train_samples, 2)
        _range("stage2.eval-samples", self.eval_samples, 1)
        _choice("stage2.channel", self.channel, CHANNELS.names())
        try:
            build_channel(self.channel, **self.channel_params())
        except ValueError as err:
            raise ConfigError(f"stage2: {err}") from None


@dataclass(frozen=True)
class FaultsSection:
    """Injected faults (all seeded, so a rerun or a resumed run sees the same ones).

    ``dropout``: each device misses each round with this probability (the same devices in
    every topology's round r). ``corrupt-kb``: "device:mode,..." tampers with every KB
    payload the server sends to that device; modes: ``flip`` (flipped bytes) or
    ``wrong-dim`` (a valid KB of another dimension).
    """

    dropout: float = 0.0
    corrupt_kb: str = ""

    def validate(self) -> None:
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"faults.dropout={self.dropout!r} out of range [0, 1)")
        self.corruptions()

    def corruptions(self) -> dict[int, str]:
        """``corrupt-kb`` as {device: mode}."""
        out: dict[int, str] = {}
        for item in filter(None, (part.strip() for part in self.corrupt_kb.split(","))):
            device, _, mode = item.partition(":")
            if not device.strip().isdigit():
                raise ConfigError(f"faults.corrupt-kb={self.corrupt_kb!r}: {item!r} is not 'device:mode' (e.g. '3:flip')")
            _choice("faults.corrupt-kb", mode.strip(), KB_CORRUPTIONS)
            out[int(device)] = mode.strip()
        return out


@dataclass(frozen=True)
class ScenarioConfig:
    scenario: ScenarioSection = field(default_factory=ScenarioSection)
    data: DataSection = field(default_factory=DataSection)
    devices: DevicesSection = field(default_factory=DevicesSection)
    train: TrainSection = field(default_factory=TrainSection)
    fusion: FusionSection = field(default_factory=FusionSection)
    kb: KBSection = field(default_factory=KBSection)
    grounding: GroundingSection = field(default_factory=GroundingSection)
    topology: TopologySection = field(default_factory=TopologySection)
    network: NetworkSection = field(default_factory=NetworkSection)
    eval: EvalSection = field(default_factory=EvalSection)
    stage2: StageTwoSection = field(default_factory=StageTwoSection)
    faults: FaultsSection = field(default_factory=FaultsSection)

    def validate(self) -> "ScenarioConfig":
        for section in dataclasses.fields(self):
            getattr(self, section.name).validate()
        try:
            dim = self.kb.known_dim()
            if dim is not None:
                self.kb.kb_config().validate(dim, 2**self.kb.nbits)
        except (UnknownNameError, ValueError) as err:
            raise ConfigError(f"kb: {err}") from None
        if self.train.kb_method == "crlsc-grounded" and not self.kb.anchors:
            raise ConfigError("train.kb-method='crlsc-grounded' needs anchors to ground the devices: set kb.anchors > 0")
        if self.topology.peer_knowledge != "pkb" and self.train.kb_method != "crlsc-grounded":
            raise ConfigError(
                f"topology.peer-knowledge={self.topology.peer_knowledge!r} keys peers' knowledge by the anchors: "
                f"it needs train.kb-method='crlsc-grounded' (got {self.train.kb_method!r}), or use 'pkb'"
            )
        if "p2p" in self.scenario.topology_list and self.topology.graph == "k-regular":
            if self.topology.degree >= self.devices.num_devices or (self.topology.degree * self.devices.num_devices) % 2:
                raise ConfigError(
                    f"topology.degree={self.topology.degree} impossible for a k-regular graph on "
                    f"{self.devices.num_devices} devices (need degree < devices and degree*devices even)"
                )
        bad = sorted(d for d in self.faults.corruptions() if d >= self.devices.num_devices)
        if bad:
            raise ConfigError(
                f"faults.corrupt-kb={self.faults.corrupt_kb!r} names devices {bad}; valid ids: 0..{self.devices.num_devices - 1}"
            )
        return self

    def to_flat(self) -> dict[str, Any]:
        """The dotted-key form used by Flower's run config and pyproject.toml."""
        flat: dict[str, Any] = {}
        for section in dataclasses.fields(self):
            for f in dataclasses.fields(getattr(self, section.name)):
                flat[f"{section.name}.{f.name.replace('_', '-')}"] = getattr(getattr(self, section.name), f.name)
        return flat


def _convert(key: str, value: Any, default: Any) -> Any:
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{key}={value!r} has type {type(value).__name__}; expected {expected.__name__}")
    return value


def from_flat(values: Mapping[str, Any]) -> ScenarioConfig:
    """Build and validate a config from dotted keys; keys not given keep their defaults."""
    defaults = ScenarioConfig()
    sections: dict[str, dict[str, Any]] = {f.name: {} for f in dataclasses.fields(defaults)}
    valid_keys = defaults.to_flat()
    for key, value in values.items():
        if key not in valid_keys:
            section = key.split(".")[0]
            hint = [k for k in valid_keys if k.startswith(section + ".")] or sorted({k.split('.')[0] for k in valid_keys})
            raise ConfigError(f"unknown scenario key {key!r}; valid keys{' in [' + section + ']' if section in sections else ' (tables)'}: {', '.join(hint)}")
        section, name = key.split(".", 1)
        sections[section][name.replace("-", "_")] = _convert(key, value, valid_keys[key])
    try:
        config = ScenarioConfig(
            **{name: dataclasses.replace(getattr(defaults, name), **overrides) for name, overrides in sections.items()}
        )
    except ValueError as err:  # sections that validate on creation (fusion, kb, grounding)
        raise ConfigError(str(err)) from None
    return config.validate()


def flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def load_scenario(path: str | Path) -> ScenarioConfig:
    """Read and validate a scenario TOML file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"scenario file {path} does not exist")
    try:
        table = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"scenario file {path} is not valid TOML: {err}") from None
    try:
        return from_flat(flatten(table))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
