"""Fixtures shared by the core-library tests: one thread, a private cache, shared server models.

Nothing here is autouse: the federation and stage-2 suites keep their own conftests. Tests that
touch the on-disk cache ask for ``private_cache`` (``CRLSC_CACHE_DIR`` -> a tmp dir).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # the test machine is shared

# A tiny randomly initialised CLIP for open_clip tests (real ViT-B-32 weights are not offline).
TINY_CLIP = "crlsc-tiny-test"
TINY_CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the crlsc_fl cache at a fresh tmp dir, so tests never read or write the user's."""
    path = tmp_path / "cache"
    monkeypatch.setenv("CRLSC_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def minilm():
    """The offline all-MiniLM-L6-v2 text encoder (about 2 s to load, so once per session)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("HF_HUB_OFFLINE", "1")
    from crlsc_fl.models.server_models import MiniLMTextEncoder

    yield MiniLMTextEncoder()
    patch.undo()


@pytest.fixture(scope="session")
def tiny_clip_name(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Register the tiny open_clip config (a JSON file in a tmp dir) and return its name."""
    import open_clip

    if TINY_CLIP not in open_clip.list_models():
        path = tmp_path_factory.mktemp("open_clip") / f"{TINY_CLIP}.json"
        path.write_text(json.dumps(TINY_CLIP_CONFIG))
        open_clip.add_model_config(path)
    return TINY_CLIP


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_name: str):
    """A randomly initialised tiny open_clip server model (seeded)."""
    from crlsc_fl.models.server_models import OpenClipEncoder

    torch.manual_seed(0)
    return OpenClipEncoder(model_name=tiny_clip_name)


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def cifar10_dir() -> Path:
    """The offline CIFAR-10 copy beside the checkout (../shared/data); skip the test without it."""
    if not (SHARED_DATA / "cifar10" / "train.npz").exists():
        pytest.skip("no offline CIFAR-10 in ../shared/data")
    return SHARED_DATA
