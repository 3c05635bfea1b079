"""Faults without Flower: dropout draws, bad KB payloads on the device, failed rounds and
device-state cleaning (trimming results on resume: tests/outputs/test_run_dir.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crlsc_fl.bookkeeping import run_state
from crlsc_fl.bookkeeping.failures import RoundFailedError, check_round, check_simulation_intact, error_fields
from crlsc_fl.codec import incoming_kbs, train_content
from crlsc_fl.device.device_round import RoundTask
from crlsc_fl.device.device_store import DeviceStore
from crlsc_fl.kb.knowledge_base import KBConfig, KnowledgeBase, KnowledgeBaseError
from crlsc_fl.scenario.config import ConfigError, from_flat
from crlsc_fl.scenario.faults import FaultsConfig, digest, dropped_devices, tampered_kb


def test_dropout_is_seeded_per_round_and_near_its_rate() -> None:
    cfg = from_flat({"devices.num-devices": 200, "faults.dropout": 0.3, "data.dataset": "synthetic"})
    rounds = [dropped_devices(cfg.faults, 200, cfg.scenario.seed, r) for r in (1, 2, 3)]
    assert rounds == [dropped_devices(cfg.faults, 200, cfg.scenario.seed, r) for r in (1, 2, 3)]  # the same in every topology and rerun
    assert len({frozenset(r) for r in rounds}) == 3
    assert all(40 <= len(r) <= 80 for r in rounds)
    assert dropped_devices(FaultsConfig(), 200, 0, 1) == set()


@pytest.mark.parametrize(("values", "message"), [
    ({"faults.dropout": 1.0}, r"faults.dropout=1.0: Input should be less than 1"),
    ({"faults.corrupt-kb": "1:melt"}, "faults.corrupt-kb.1='melt': Input should be 'flip' or 'wrong-dim'"),
    ({"faults.corrupt-kb": "one:flip"}, "is not 'device:mode'"),
    ({"faults.corrupt-kb": "100:flip"}, r"names devices \[100\]; valid ids: 0..99"),
    ({"scenario.min-success-fraction": 1.5}, "scenario.min-success-fraction=1.5: Input should be less than or equal to 1"),
])
def test_bad_fault_settings_fail_clearly(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_flat(values)


def small_kb(dim: int = 384) -> bytes:
    vectors = np.random.default_rng(0).standard_normal((40, dim)).astype("float32")
    return KnowledgeBase.build(vectors, KBConfig("flat")).to_bytes()


def test_tampered_kbs_are_rejected_by_the_device_and_not_kept(tmp_path: Path) -> None:
    blob = small_kb()
    task = RoundTask("cloud-edge", 1, "crlsc", 384, ("skb",))
    flipped, sha = tampered_kb("flip", blob, 384, seed=0, server_round=1, device=3)
    assert flipped != blob and sha == digest(blob) and tampered_kb("flip", blob, 384, 0, 1, 3)[0] == flipped  # seeded
    with pytest.raises(KnowledgeBaseError, match="'skb' rejected: .* do not match the SHA-256"):
        incoming_kbs(train_content({}, task, {"skb": flipped}, digests={"skb": sha}))
    assert incoming_kbs(train_content({}, task, {"skb": blob})) == {"skb": blob}
    wrong, sha = tampered_kb("wrong-dim", blob, 384, seed=0, server_round=1, device=3)
    received = incoming_kbs(train_content({}, task, {"skb": wrong}, digests={"skb": sha}))  # intact bytes
    store = DeviceStore(tmp_path, "run", "cloud-edge", 3)
    with pytest.raises(KnowledgeBaseError, match="'skb' rejected: the device encoder's output dimension 384 does not match .* 400"):
        store.knowledge_base("skb", received["skb"], dim=384)
    assert not (store.path / "kb" / "skb.kb").exists()
    assert store.knowledge_base("skb", blob, dim=384).dim == 384 and (store.path / "kb" / "skb.kb").exists()


def test_flower_error_reasons_and_the_success_threshold() -> None:
    fields = error_fields("<class 'crlsc_fl.kb.knowledge_base.KnowledgeBaseError'>:<'bad KB'>")
    assert fields == {"error": "KnowledgeBaseError: bad KB", "error_type": "KnowledgeBaseError", "error_message": "bad KB"}
    assert error_fields("node went away")["error_type"] == "FlowerError"
    unavailable = error_fields("Error: Node Unavailable - no heartbeat", code=5)  # ErrorCode.NODE_UNAVAILABLE
    assert unavailable["error"] == "NodeUnavailable: Node Unavailable - no heartbeat"
    ray = ("RayTaskError(ClientAppException): ray::ClientAppActor.run()\n  File \"x.py\", line 3, in f\n"
           "crlsc_fl.kb.knowledge_base.KnowledgeBaseError: bad KB\n\nThe above exception was the direct cause:\n"
           "flwr.clientapp.client_app.ClientAppException: \nException ClientAppException occurred. Message: bad KB")
    assert error_fields(ray)["error"] == "KnowledgeBaseError: bad KB"
    assert error_fields(f"<class 'ray.exceptions.RayTaskError(ClientAppException)'>:<'{ray}'>")["error_type"] == "KnowledgeBaseError"
    check_round("p2p", 2, sent=10, succeeded=9, min_fraction=0.9)
    check_round("p2p", 2, sent=0, succeeded=0, min_fraction=0.9)  # everyone dropped out: not a failure
    with pytest.raises(RoundFailedError, match=r"p2p round 2: only 8 of 10 .* \(80% < scenario.min-success-fraction=0.9\)"):
        check_round("p2p", 2, sent=10, succeeded=8, min_fraction=0.9)


def test_clean_removes_finished_and_abandoned_state_only(tmp_path: Path) -> None:
    root, results = tmp_path / "state", tmp_path / "results"
    (results / "resumable").mkdir(parents=True)
    (results / "resumable" / "config.json").write_text("{}")
    run_state.write_marker(root, "1", run_state.COMPLETED, results / "done")
    run_state.write_marker(root, "2", "interrupted", results / "resumable")
    run_state.write_marker(root, "3", "interrupted", results / "deleted")
    (root / "4" / "p2p").mkdir(parents=True)  # no marker: running now, or not ours
    for key in "1234":
        (root / key / "blob").write_bytes(b"x" * 1000)
    removed, kept = run_state.clean(root)
    assert sorted(s.run_key for s, _ in removed) == ["1", "3"]
    assert sorted(s.run_key for s, _ in kept) == ["2", "4"] and all(size >= 1000 for _, size in kept)
    assert sorted(p.name for p in root.iterdir()) == ["2", "4"]


@pytest.mark.parametrize("error, refused", [
    ("Unknown: <class 'ray.exceptions.ActorUnavailableError'>:<'The actor 98a6 is unavailable'>", True),
    ("KnowledgeBaseError: knowledge base 'skb' rejected", False),
    ("NodeUnavailable: node went offline", False),
])
def test_a_round_that_lost_a_ray_actor_is_not_committed(error: str, refused: bool) -> None:
    """Ctrl-C while a round finishes: a device whose actor the shutdown took is no device error."""
    failed = {3: {"error": error}}
    if refused:
        with pytest.raises(RoundFailedError, match=r"cloud-edge round 2: the simulation lost the Ray actors of devices \[3\]"):
            check_simulation_intact("cloud-edge", 2, failed)
    else:
        check_simulation_intact("cloud-edge", 2, failed)
