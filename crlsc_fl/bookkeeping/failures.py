"""Failed device calls and failed runs: how errors are recorded, counted and judged.

A device call fails when its ClientApp raises (Flower returns an error reply), when no
reply comes within ``scenario.reply-timeout`` seconds of sending or its node goes offline
while the server waits (``NoReply``), or when its node is offline when the round starts
(``NodeOffline``). Each
failure becomes a metrics row with ``error``, ``error_type`` and ``error_message``.

A round *fails the run* when fewer than ``scenario.min-success-fraction`` of the devices
that were **sent a message** reply successfully. Devices that dropped out
(``faults.dropout``) were never sent one: like clients a Flower strategy did not sample,
they count neither as successes nor as failures. A round in which every device dropped
out is not a failure.
"""

from __future__ import annotations

import re
from typing import Any

# Flower formats a ClientApp exception as "<class 'pkg.Error'>:<'message'>" in deployment;
# the simulation runtime sends Ray's traceback text, whose "pkg.Error: message" lines name the
# original exception first and then the wrappers below.
_REASON = re.compile(r"^<class '(?P<type>[^']+)'>:<'(?P<message>.*)'>$", re.DOTALL)
_TRACEBACK_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*): (?P<message>.*)$", re.MULTILINE)
WRAPPERS = ("ClientAppException", "RayTaskError", "RayActorError")
FIRST_ERRORS = 5


class RoundFailedError(RuntimeError):
    """Too few devices of a round replied successfully; the run stops and is marked failed."""


def error_fields(reason: str, code: int | None = None) -> dict[str, str]:
    """``error`` ("Type: message"), ``error_type`` (the exception's short class name, or
    Flower's error code in CamelCase, e.g. ``NodeUnavailable``) and ``error_message``."""
    from flwr.common.constant import ErrorCode

    names = {getattr(ErrorCode, n): n for n in dir(ErrorCode) if n.isupper()}
    if code is not None and code != ErrorCode.CLIENT_APP_RAISED_EXCEPTION and code in names:
        kind = "".join(part.capitalize() for part in names[code].split("_"))  # raised by Flower, not by our code
        message = reason.strip().removeprefix("Error: ")
        return {"error": f"{kind}: {message}", "error_type": kind, "error_message": message}
    kind, message = "FlowerError", reason.strip()
    match = _REASON.match(message)
    if match:
        kind, message = match.group("type").rsplit(".", 1)[-1], match.group("message")
    if kind.startswith(WRAPPERS) or not match:  # look inside Ray's traceback for the original exception
        for line in _TRACEBACK_LINE.finditer(message):
            name = line.group("type").rsplit(".", 1)[-1]
            if not name.startswith(WRAPPERS):
                kind, message = name, line.group("message")
                break
    return {"error": f"{kind}: {message}", "error_type": kind, "error_message": message}


def check_round(topology: str, server_round: int, sent: int, succeeded: int, min_fraction: float) -> None:
    """Raise :class:`RoundFailedError` when ``succeeded / sent < min_fraction``."""
    if sent and succeeded / sent < min_fraction:
        raise RoundFailedError(
            f"{topology} round {server_round}: only {succeeded} of {sent} devices sent a message replied successfully "
            f"({succeeded / sent:.0%} < scenario.min-success-fraction={min_fraction:g})"
        )


LOST_ACTOR = "ActorUnavailableError"


def check_simulation_intact(topology: str, server_round: int, failed: dict[int, dict[str, str]]) -> None:
    """Raise :class:`RoundFailedError` when a device's call failed because the simulation lost
    its Ray actor (``ActorUnavailableError``: the simulation is being stopped, e.g. by Ctrl-C,
    or an actor is restarting). Such a failure says nothing about the device, and committing
    the round with it would make ``--resume`` continue after the round instead of redoing it."""
    lost = sorted(d for d, fields in failed.items() if LOST_ACTOR in fields.get("error", ""))
    if lost:
        raise RoundFailedError(
            f"{topology} round {server_round}: the simulation lost the Ray actors of devices {lost} mid-round "
            f"({LOST_ACTOR}); the round is not committed (resume redoes it)"
        )


def first_errors(rows: list[dict[str, Any]], count: int = FIRST_ERRORS) -> list[dict[str, Any]]:
    """The first ``count`` failed device calls, in the order they were recorded."""
    keys = ("device", "topology", "round", "error_type", "error_message")
    return [{k: r.get(k) for k in keys} for r in rows if "error" in r][:count]


def describe(error: dict[str, Any]) -> str:
    """One line for the terminal."""
    return (f"device {error.get('device')} ({error.get('topology')}, round {error.get('round')}): "
            f"{error.get('error_type')}: {error.get('error_message')}")
