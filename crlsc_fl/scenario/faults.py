"""Injected faults, for testing what the federation does with them (scenario table ``[faults]``).

- **Dropout**: each device misses each round with probability ``faults.dropout``. The draw
  depends only on the seed and the round (not the topology), so every topology loses the
  same devices in round r and a resumed or repeated run loses the same ones again. A
  dropped device is not sent a message: it is not a failure (see
  :mod:`crlsc_fl.bookkeeping.failures`), and nothing moves to or from it.
- **Bad KB payloads**: ``faults.corrupt-kb = "device:mode,..."`` tampers with every KB the
  server sends to that device, after the digest of the real KB was taken: ``flip`` flips
  bytes (the device must notice via the digest), ``wrong-dim`` swaps in a well-formed KB of
  another dimension with its own digest (the device must notice the dimension).
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal, get_args

import numpy as np
from pydantic import BeforeValidator, Field, PlainSerializer

from crlsc_fl.validation import component

KBCorruption = Literal["flip", "wrong-dim"]
KB_CORRUPTIONS: tuple[str, ...] = get_args(KBCorruption)

# Independent seeded streams per kind of fault.
DROPOUT_STREAM = 101
CORRUPT_STREAM = 202
FLIPPED_BYTES = 16


def parse_corruptions(value: Any) -> Any:
    """``"3:flip, 5:wrong-dim"`` -> {3: "flip", 5: "wrong-dim"}."""
    if not isinstance(value, str):
        return value
    out: dict[int, str] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        device, _, mode = item.partition(":")
        if not device.strip().isdigit():
            raise ValueError(f"{item!r} is not 'device:mode' (e.g. '3:flip')")
        out[int(device)] = mode.strip()
    return out


Corruptions = Annotated[
    dict[int, KBCorruption],
    BeforeValidator(parse_corruptions),
    PlainSerializer(lambda modes: ",".join(f"{device}:{mode}" for device, mode in modes.items())),
]


@component
class FaultsConfig:
    """Injected faults, all seeded, so a rerun or a resumed run sees the same ones (module docstring)."""

    dropout: Annotated[
        float, Field(ge=0, lt=1, description="probability that a device misses a round (seeded by seed and round: the same "
                                             "devices in every topology)")
    ] = 0.0
    corrupt_kb: Annotated[
        Corruptions, Field(description="`device:mode,...`: the server spoils every KB it sends to those devices, `flip` (flipped "
                                       "bytes after the digest) or `wrong-dim` (a valid KB of dimension +16)")
    ] = Field(default_factory=dict)


def digest(blob: bytes) -> str:
    """The SHA-256 a device checks a received KB against."""
    return hashlib.sha256(blob).hexdigest()


def dropped_devices(faults: FaultsConfig, num_devices: int, seed: int, server_round: int) -> set[int]:
    """The devices among ``num_devices`` that miss ``server_round`` (seeded by the scenario's
    ``seed`` and the round)."""
    p = faults.dropout
    if p <= 0:
        return set()
    draws = np.random.default_rng([seed, DROPOUT_STREAM, server_round]).random(num_devices)
    return {int(d) for d in np.flatnonzero(draws < p)}


def tampered_kb(mode: str, blob: bytes, dim: int, seed: int, server_round: int, device: int) -> tuple[bytes, str]:
    """(payload, digest) that the server sends instead of ``blob`` under fault ``mode``."""
    rng = np.random.default_rng([seed, CORRUPT_STREAM, server_round, device])
    if mode == "flip":
        data = bytearray(blob)
        for position in rng.choice(len(data), size=min(FLIPPED_BYTES, len(data)), replace=False):
            data[position] ^= 0xFF
        return bytes(data), digest(blob)  # the digest of what should have arrived
    if mode == "wrong-dim":
        from crlsc_fl.kb.knowledge_base import KBConfig, KnowledgeBase

        kb = KnowledgeBase.build(rng.standard_normal((32, dim + 16)).astype("float32"), KBConfig("flat"), source="wrong-dim-fault")
        wrong = kb.to_bytes()
        return wrong, digest(wrong)  # intact bytes, wrong content
    raise ValueError(f"unknown KB corruption {mode!r}")
