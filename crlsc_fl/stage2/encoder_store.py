"""Each encoder's stage-2 results on disk, written as soon as the encoder is done.

A report over 50 encoders runs for many minutes; ``<out>/encoders/<label>.json`` holds one
encoder's probe rows, link results, figure paths and timings, written atomically by the
process that evaluated it. Re-running the command on the same ``--out`` reuses every file
whose ``key`` still matches, so a crash (or Ctrl-C) loses no finished encoder. The key
hashes the encoder file's bytes and the settings that determine the numbers (not the
number of workers or which encoders draw figures), so a changed setting or a retrained
encoder is evaluated again instead of being mixed into the new report.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FOLDER = "encoders"


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-1 of a file's bytes (an encoder saved again with other weights changes it)."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class EncoderStore:
    """``<out>/encoders/<label>.json`` per encoder, keyed by its file and the ``settings``."""

    def __init__(self, out_dir: str | os.PathLike[str], settings: Mapping[str, Any]) -> None:
        self.folder = Path(out_dir) / FOLDER
        self.settings_digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()

    def path(self, label: str) -> Path:
        return self.folder / f"{label}.json"

    def key(self, encoder_file: str | os.PathLike[str]) -> str:
        """What a stored result must have been computed from to be reused."""
        return hashlib.sha1(f"{self.settings_digest}|{file_digest(encoder_file)}".encode()).hexdigest()

    def finished(self, label: str, key: str, needs_figures: bool) -> tuple[dict[str, Any] | None, str]:
        """(the stored result, "") when it can be reused, else (None, why not)."""
        path = self.path(label)
        if not path.is_file():
            return None, "not done"
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError) as err:  # a file cut short outside this code (disk full, copied half)
            return None, f"unreadable {path.name} ({err.__class__.__name__})"
        if not isinstance(result, dict) or result.get("key") != key:
            return None, "done with other settings or another encoder file"
        if needs_figures:
            figures = (result.get("link") or {}).get("figures") or {}
            # by name: the figures lie beside encoders/, wherever the output folder was moved
            if not figures or not all((self.folder.parent / Path(p).name).is_file() for p in figures.values()):
                return None, "figures missing"
        return result, ""

    def save(self, label: str, result: Mapping[str, Any]) -> Path:
        """Write atomically: a reader (or a re-run after a crash) sees the whole file or none."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(label)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result, indent=2))
        os.replace(tmp, path)
        return path
