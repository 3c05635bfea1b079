"""The checksummed wire format shared by everything that crosses the network as bytes.

``magic`` (8 bytes), a 4-byte little-endian header length, a UTF-8 JSON header that holds
``body_sha256`` (the SHA-256 of the body) beside the payload's own metadata, then the body.
The checksum catches corruption that a decoder would accept silently (flipped bytes in PQ
codes, JPEG data or float keys); a receiver gets a :class:`WireFormatError`, not a crash.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import numpy as np


class WireFormatError(ValueError):
    """Bytes that are not a valid blob of the expected kind."""


def pack(magic: bytes, header: dict[str, Any], body: bytes) -> bytes:
    """Serialise ``header`` (JSON-able) and ``body`` behind ``magic`` with a body checksum."""
    text = json.dumps({**header, "body_sha256": hashlib.sha256(body).hexdigest()}, sort_keys=True).encode()
    return magic + struct.pack("<I", len(text)) + text + body


def unpack(magic: bytes, blob: bytes | np.ndarray, what: str) -> tuple[dict[str, Any], bytes]:
    """The header (without the checksum) and the body of a blob written by :func:`pack`.

    ``what`` names the payload in error messages (``"knowledge base"``, ``"anchor set"``).
    """
    raw = blob.tobytes() if isinstance(blob, np.ndarray) else bytes(blob)
    if len(raw) < len(magic) + 4 or not raw.startswith(magic):
        raise WireFormatError(f"not a crlsc_fl {what}: expected the header {magic!r}, got {raw[:8]!r} ({len(raw)} bytes)")
    (header_len,) = struct.unpack("<I", raw[len(magic) : len(magic) + 4])
    start = len(magic) + 4
    body = raw[start + header_len :]
    try:
        header = json.loads(raw[start : start + header_len])
        checksum = header.pop("body_sha256")
    except Exception as err:
        raise WireFormatError(f"corrupt {what} bytes ({len(raw)} bytes): unreadable header ({err})") from None
    if hashlib.sha256(body).hexdigest() != checksum:
        raise WireFormatError(f"corrupt {what} bytes ({len(raw)} bytes): the body does not match the header's body_sha256 checksum")
    return header, body
