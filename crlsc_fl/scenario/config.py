"""A federated run's configuration: one table per component, composed.

A scenario TOML file (``scenarios/*.toml``) holds one table per component; each table is
that component's own validated config (:mod:`crlsc_fl.validation`), and
:class:`ScenarioConfig` only composes them and checks what spans several tables:

=============  ======================================================================
table          component config
=============  ======================================================================
[scenario]     :class:`crlsc_fl.scenario.run_config.RunConfig`
[data]         :class:`crlsc_fl.data.config.DataConfig`
[devices]      :class:`crlsc_fl.scenario.devices.DevicesConfig`
[train]        :class:`crlsc_fl.scenario.local_training.LocalTrainingConfig`
[fusion]       :class:`crlsc_fl.models.modules.kb_fusion.FusionConfig` (eq. 1-2)
[kb]           :class:`crlsc_fl.kb.mentor.MentorConfig` (the SKB and its anchors)
[pkb]          :class:`crlsc_fl.kb.builders.PKBConfig` (the devices' PKBs)
[grounding]    :class:`crlsc_fl.methods.grounded.GroundingConfig`
[topology]     :class:`crlsc_fl.scenario.topology_config.TopologyConfig`
[network]      :class:`crlsc_fl.scenario.network.NetworkConfig`
[eval]         :class:`crlsc_fl.eval.knn.KNNEvalConfig`
[stage2]       :class:`crlsc_fl.stage2.phase_config.Stage2Config`
[faults]       :class:`crlsc_fl.scenario.faults.FaultsConfig`
=============  ======================================================================

Keys flatten to dotted names (``[train] local-epochs = 1`` -> ``train.local-epochs``), the
form Flower passes to the apps as ``context.run_config``. Flower needs every key with its
default under ``[tool.flwr.app.config]`` in pyproject.toml: that block, and the key table
of README.md, are generated from these classes' field descriptions
(:mod:`crlsc_fl.scenario.key_docs`; a test keeps both equal).
:func:`load_scenario` and :func:`from_flat` raise :class:`ConfigError` naming the key, the
bad value and what is allowed, before any work.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from crlsc_fl.data.config import DataConfig
from crlsc_fl.eval.knn import KNNEvalConfig
from crlsc_fl.kb.builders import PKBConfig
from crlsc_fl.kb.mentor import MentorConfig
from crlsc_fl.methods.grounded import GroundingConfig
from crlsc_fl.models.modules.kb_fusion import FusionConfig
from crlsc_fl.scenario.devices import DevicesConfig
from crlsc_fl.scenario.faults import FaultsConfig
from crlsc_fl.scenario.graphs import impossible_graph
from crlsc_fl.scenario.local_training import LocalTrainingConfig
from crlsc_fl.scenario.method_needs import check_method_needs
from crlsc_fl.scenario.network import NetworkConfig
from crlsc_fl.scenario.run_config import RunConfig
from crlsc_fl.scenario.topology_config import TopologyConfig
from crlsc_fl.stage2.phase_config import Stage2Config
from crlsc_fl.validation import ConfigError, build_component, key_name, scenario_fields

__all__ = ["ConfigError", "ScenarioConfig", "flatten", "from_flat", "load_scenario"]


@dataclass(frozen=True)
class ScenarioConfig:
    scenario: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    devices: DevicesConfig = field(default_factory=DevicesConfig)
    train: LocalTrainingConfig = field(default_factory=LocalTrainingConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    kb: MentorConfig = field(default_factory=MentorConfig)
    pkb: PKBConfig = field(default_factory=PKBConfig)
    grounding: GroundingConfig = field(default_factory=GroundingConfig)
    topology: TopologyConfig = field(default_factory=TopologyConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    eval: KNNEvalConfig = field(default_factory=KNNEvalConfig)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    faults: FaultsConfig = field(default_factory=FaultsConfig)

    def __post_init__(self) -> None:
        """The checks that span tables (each table has validated itself)."""
        dim = self.kb.known_dim()
        if dim is not None:
            try:
                self.kb.validate(dim, 2**self.kb.nbits)
            except ValueError as err:
                raise ConfigError(str(err)) from None
        check_method_needs(self.train.kb_method, self.kb, self.topology)
        if "p2p" in self.scenario.topologies:
            reason = impossible_graph(self.topology.graph, self.devices.num_devices, self.topology.degree)
            if reason:
                raise ConfigError(reason)
        bad = sorted(d for d in self.faults.corrupt_kb if d >= self.devices.num_devices)
        if bad:
            raise ConfigError(f"faults.corrupt-kb names devices {bad}; valid ids: 0..{self.devices.num_devices - 1}")

    def tables(self) -> dict[str, Any]:
        """{table name: component config}."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_flat(self) -> dict[str, Any]:
        """The dotted-key form used by Flower's run config and pyproject.toml (lists and
        mixtures written back as text)."""
        flat: dict[str, Any] = {}
        for table, config in self.tables().items():
            values = TypeAdapter(type(config)).dump_python(config)
            for f in scenario_fields(type(config)):
                flat[f"{table}.{key_name(f.name)}"] = values[f.name]
        return flat


def table_types() -> dict[str, type]:
    """{table name: component config class} of a scenario."""
    return {f.name: f.type if isinstance(f.type, type) else globals()[f.type] for f in dataclasses.fields(ScenarioConfig)}


def from_flat(values: Mapping[str, Any]) -> ScenarioConfig:
    """Build and validate a config from dotted keys; keys not given keep their defaults."""
    types = table_types()
    keys = {table: [key_name(f.name) for f in scenario_fields(config_type)] for table, config_type in types.items()}
    tables: dict[str, dict[str, Any]] = {table: {} for table in types}
    for dotted, value in values.items():
        table, _, key = dotted.partition(".")
        if table not in types:
            raise ConfigError(f"unknown scenario key {dotted!r}; valid tables: {', '.join(types)}")
        if key not in keys[table]:
            raise ConfigError(f"unknown scenario key {dotted!r}; valid keys in [{table}]: {', '.join(keys[table])}")
        tables[table][key] = value
    return ScenarioConfig(**{table: build_component(types[table], tables[table], table) for table in types})


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
