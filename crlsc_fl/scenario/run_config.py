"""What a federated run does and how it is supervised (the scenario's ``[scenario]`` table)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from crlsc_fl.registry import Registry
from crlsc_fl.validation import component, name_list

TOPOLOGIES: Registry[type] = Registry("topology", plugins="strategies")
"""Topology name -> knowledge-transfer strategy class. The strategies (the top-level
``strategies`` package, above this config) register themselves in it when imported; the
first lookup imports that package (:class:`~crlsc_fl.registry.Registry`'s ``plugins``), so
``scenario.topologies`` is validated against it without this module importing them."""


def plain_name(name: str) -> str:
    if not name or any(c in name for c in "/\\ "):
        raise ValueError("must be a non-empty name without slashes or spaces")
    return name


@component
class RunConfig:
    """What the run is (its name, topologies, rounds, seed) and how the server supervises it:
    how many messages it keeps in flight, when a round fails, how long it waits for a reply,
    and which device state outlives the run."""

    name: Annotated[
        str, AfterValidator(plain_name), Field(description="the run's name: results go to `<results-dir>/<name>/<run id>/`")
    ] = "quick"
    topologies: Annotated[
        tuple[str, ...], name_list(TOPOLOGIES.names),
        Field(description="comma-separated topologies, run one after another (`local`, `cloud-edge`, `p2p`, `hybrid`, `fedavg`)"),
    ] = ("local", "cloud-edge", "p2p", "hybrid", "fedavg")
    rounds: Annotated[int, Field(ge=1, description="federated rounds of each topology")] = 2
    seed: Annotated[int, Field(description="seed of everything random (shards, devices, training, faults)")] = 0
    results_dir: Annotated[
        str, Field(description="where runs write their results (a relative path is taken from the directory `crlsc-fl` runs in)")
    ] = "results"
    max_in_flight: Annotated[
        int, Field(ge=0, description="messages the server has out at once (bounds the payloads held by Flower and the server)")
    ] = 20
    min_success_fraction: Annotated[
        float,
        Field(ge=0, le=1, description="a round in which fewer of the devices sent a message reply successfully fails the run "
                                      "(devices that dropped out were not sent one)"),
    ] = 0.9
    reply_timeout: Annotated[
        float, Field(gt=0, description="seconds to wait for each device's reply (a device silent that long, or whose node "
                                       "went offline, counts as failed)")
    ] = 3600.0
    resume: Annotated[
        str, Field(description="the results directory of an interrupted or failed run to continue (set by `crlsc-fl run --resume DIR`)")
    ] = ""
    keep_device_state: Annotated[
        bool, Field(description="keep every topology's device state after the run (by default it is removed once the topology's "
                                "last round and stage 2 are done)")
    ] = False
    keep_devices: Annotated[
        int, Field(ge=0, description="keep the encoders of this many devices (a seeded sample stratified by architecture, the same "
                                     "in every topology) for `crlsc-fl stage2 --run-dir`; received KBs are removed even there")
    ] = 0
