"""What a federated run does and how it is supervised (the scenario's ``[scenario]`` table)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from crlsc_fl.validation import component, name_list


def topology_names() -> list[str]:
    """The registered knowledge-transfer strategies (imported when a config is validated:
    the strategies themselves import the config)."""
    from strategies.registry import STRATEGIES

    return STRATEGIES.names()


def plain_name(name: str) -> str:
    if not name or any(c in name for c in "/\\ "):
        raise ValueError("must be a non-empty name without slashes or spaces")
    return name


@component
class RunConfig:
    """``name`` (results go to ``<results_dir>/<name>/<run id>/``), the ``topologies`` run
    one after another for ``rounds`` rounds each, the ``seed`` of everything random.
    Supervision: ``max_in_flight`` messages at once (bounds the payloads held by Flower and
    the server); a round in which fewer than ``min_success_fraction`` of the devices sent a
    message reply successfully fails the run (devices that dropped out were not sent one);
    ``reply_timeout`` seconds per reply (a device silent that long, or whose node went
    offline, counts as failed); ``resume``: the results directory of an interrupted or
    failed run to continue (set by ``crlsc-fl run --resume DIR``); ``keep_device_state``
    keeps every topology's device state after the run (by default a topology's state is
    removed once its last round and stage 2 are done); ``keep_devices`` keeps the encoders
    of that many devices, a seeded sample stratified by architecture and the same in every
    topology, for ``crlsc-fl stage2 --run-dir`` (received KBs are removed even there)."""

    name: Annotated[str, AfterValidator(plain_name)] = "quick"
    topologies: name_list(topology_names) = ("local", "cloud-edge", "p2p", "hybrid", "fedavg")  # type: ignore[valid-type]
    rounds: Annotated[int, Field(ge=1)] = 2
    seed: int = 0
    results_dir: str = "results"
    max_in_flight: Annotated[int, Field(ge=0)] = 20
    min_success_fraction: Annotated[float, Field(ge=0, le=1)] = 0.9
    reply_timeout: Annotated[float, Field(gt=0)] = 3600.0
    resume: str = ""
    keep_device_state: bool = False
    keep_devices: Annotated[int, Field(ge=0)] = 0
