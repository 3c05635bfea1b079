"""Which device receives which knowledge base (or weights) in each topology, and what is counted."""

from __future__ import annotations

import pytest
import torch
from flwr.app import RecordDict

from crlsc_fl.codec import reply_content
from crlsc_fl.device.device_round import RoundOutcome
from crlsc_fl.methods import METHODS, PLAIN_METHOD, Need, methods_using
from crlsc_fl.registry import UnknownNameError
from crlsc_fl.scenario.faults import dropped_devices
from strategies import STRATEGIES
from strategies.fedavg import RunningAverage


def pkb_reply(device: int) -> RecordDict:
    return reply_content(RoundOutcome({"num_examples": 10.0}, pkb=bytes([device]) * 100))


def test_local_sends_nothing(make_context) -> None:  # type: ignore[no-untyped-def]
    strategy = STRATEGIES.get("local")(make_context())
    for _device, task, to_send, weights in strategy.deliveries(1):
        assert task.method == "dcl" and task.kb_keys == () and to_send == {} and weights is None
    assert strategy.delivery.ledger.transfers == []


def test_cloud_edge_sends_the_skb_once_per_link(make_context) -> None:  # type: ignore[no-untyped-def]
    strategy = STRATEGIES.get("cloud-edge")(make_context())
    first = strategy.deliveries(1)
    assert all(task.method == "crlsc" and to_send == {"skb-test": b"S" * 1000} for _, task, to_send, _ in first)
    second = strategy.deliveries(2)
    assert all(task.kb_keys == ("skb-test",) and to_send == {} for _, task, to_send, _ in second)  # devices keep it
    tiers = [t.tier for t in strategy.delivery.ledger.transfers]
    assert tiers.count("cloud-edge") == 3  # one per edge node
    assert tiers.count("edge-device") == 12  # one per device
    assert {t.src for t in strategy.delivery.ledger.transfers if t.tier == "edge-device"} == {"edge-0", "edge-1", "edge-2"}
    assert all(t.nbytes == 1000 for t in strategy.delivery.ledger.transfers)


@pytest.mark.parametrize("graph", ["ring", "k-regular"])
def test_p2p_devices_receive_their_neighbours_pkbs(make_context, graph: str) -> None:  # type: ignore[no-untyped-def]
    strategy = STRATEGIES.get("p2p")(make_context(**{"topology.graph": graph, "topology.degree": 4}))
    first = strategy.deliveries(1)
    assert all(task.method == "dcl" and task.return_pkb and not to_send for _, task, to_send, _ in first)
    strategy.after_round(1, {d: pkb_reply(d) for d in range(12)})
    for device, task, to_send, _ in strategy.deliveries(2):
        peers = strategy.peers[device]
        assert task.method == "crlsc"
        assert sorted(to_send) == sorted(f"pkb-p2p-d{p}-r1" for p in peers)
        assert all(to_send[f"pkb-p2p-d{p}-r1"] == bytes([p]) * 100 for p in peers)
    d2d = [t for t in strategy.delivery.ledger.transfers if t.tier == "d2d"]
    assert len(d2d) == sum(len(p) for p in strategy.peers.values())
    assert all(t.dst != t.src and int(t.src.split("-")[1]) in strategy.peers[int(t.dst.split("-")[1])] for t in d2d)


GROUNDED = {"train.kb-method": "crlsc-grounded", "kb.anchors": 100}
SKB_BLOB, ANCHOR_BLOB = b"S" * 1000, b"A" * 3000  # what tests/strategies/conftest.py's context serves


def test_grounded_cloud_edge_sends_skb_and_anchors_once(make_context) -> None:  # type: ignore[no-untyped-def]
    strategy = STRATEGIES.get("cloud-edge")(make_context(**GROUNDED))
    for _, task, to_send, _ in strategy.deliveries(1):
        assert task.method == "crlsc-grounded" and task.kb_keys == ("skb-test",) and task.anchor_key == "anchors-test"
        assert to_send == {"skb-test": SKB_BLOB, "anchors-test": ANCHOR_BLOB}
    assert all(to_send == {} for _, _, to_send, _ in strategy.deliveries(2))  # devices keep both
    anchors = [t for t in strategy.delivery.ledger.transfers if t.kind == "anchors"]
    assert [t.tier for t in anchors].count("cloud-edge") == 3 and [t.tier for t in anchors].count("edge-device") == 12
    assert all(t.nbytes == len(ANCHOR_BLOB) for t in anchors)
    assert sum(t.kind == "kb" for t in strategy.delivery.ledger.transfers) == 15


def test_grounded_p2p_aligns_from_round_one_and_then_uses_pkbs(make_context) -> None:  # type: ignore[no-untyped-def]
    strategy = STRATEGIES.get("p2p")(make_context(**GROUNDED))
    for _, task, to_send, _ in strategy.deliveries(1):  # no SKB: the anchors alone ground the warm-up
        assert task.method == "crlsc-grounded" and task.kb_keys == () and to_send == {"anchors-test": ANCHOR_BLOB}
    strategy.after_round(1, {d: pkb_reply(d) for d in range(12)})
    for device, task, to_send, _ in strategy.deliveries(2):
        assert task.method == "crlsc-grounded" and task.anchor_key == "anchors-test"
        assert sorted(to_send) == sorted(f"pkb-p2p-d{p}-r1" for p in strategy.peers[device])  # anchors held already
    assert not any(t.kind == "kb" and t.src == "cloud" for t in strategy.delivery.ledger.transfers)  # the SKB never moves


@pytest.mark.parametrize("knowledge", ["anchor-pkb", "random-anchor-pkb"])
@pytest.mark.parametrize("topology", ["p2p", "hybrid"])
def test_anchor_keyed_peer_knowledge_goes_to_the_alignment_not_the_kb(make_context, topology: str, knowledge: str) -> None:  # type: ignore[no-untyped-def]
    strategy = STRATEGIES.get(topology)(make_context(**GROUNDED, **{"topology.peer-knowledge": knowledge}))
    strategy.deliveries(1)
    strategy.after_round(1, {d: pkb_reply(d) for d in range(12)})
    receivers = 0
    for device, task, to_send, _ in strategy.deliveries(2):
        peers = strategy.peers[device] if topology == "p2p" else strategy.mentors_of.get(device, [])
        if not peers:  # hybrid mentors keep training with the SKB
            assert task.kb_keys == ("skb-test",) and task.peer_anchor_keys == ()
            continue
        receivers += 1
        assert task.method == "crlsc-grounded" and task.kb_keys == () and task.anchor_key == "anchors-test"
        assert task.peer_anchor_keys == tuple(f"pkb-{topology}-d{p}-r1" for p in peers)
        assert sorted(to_send) == sorted(task.peer_anchor_keys)  # the anchor images are held since round 1
    moved = [t for t in strategy.delivery.ledger.transfers if t.server_round == 2]
    assert receivers and moved and all(t.kind == "anchor-pkb" and t.tier == "d2d" for t in moved)


def test_grounded_hybrid_and_local(make_context) -> None:  # type: ignore[no-untyped-def]
    hybrid = STRATEGIES.get("hybrid")(make_context(**GROUNDED))
    for device, task, to_send, _ in hybrid.deliveries(1):
        assert task.method == "crlsc-grounded" and "anchors-test" in to_send
        assert ("skb-test" in to_send) == (device in hybrid.mentors)
    local = STRATEGIES.get("local")(make_context(**GROUNDED))  # the no-transfer baseline stays plain DCL
    assert all(task.method == "dcl" and not to_send for _, task, to_send, _ in local.deliveries(1))


@pytest.mark.parametrize("name", methods_using(Need.KB))
def test_plans_follow_what_the_kb_method_needs(make_context, name: str) -> None:  # type: ignore[no-untyped-def]
    """The anchor set goes only to a method that uses anchors; before a device holds a KB
    (p2p round 1) it trains with its KB method only if the KB is optional for it, else with
    the plain method, sent nothing."""
    method = METHODS.get(name)
    anchors = {"anchors-test": ANCHOR_BLOB} if Need.ANCHORS in method.uses() else {}
    mentored = STRATEGIES.get("cloud-edge")(make_context(**{"train.kb-method": name, "kb.anchors": 100}))
    for _, task, to_send, _ in mentored.deliveries(1):
        assert task.method == name and to_send == {"skb-test": SKB_BLOB, **anchors}
    warmup = STRATEGIES.get("p2p")(make_context(**{"train.kb-method": name, "kb.anchors": 100}))
    for _, task, to_send, _ in warmup.deliveries(1):
        if Need.KB in method.needs:
            assert task.method == PLAIN_METHOD and task.anchor_key == "" and to_send == {}
        else:
            assert task.method == name and task.kb_keys == () and to_send == anchors


def test_p2p_skb_warmup(make_context) -> None:  # type: ignore[no-untyped-def]
    strategy = STRATEGIES.get("p2p")(make_context(**{"topology.p2p-warmup": "skb"}))
    assert all(task.kb_keys == ("skb-test",) for _, task, _, _ in strategy.deliveries(1))


def test_hybrid_large_devices_mentor_small_ones(make_context) -> None:  # type: ignore[no-untyped-def]
    ctx = make_context(**{"topology.hybrid-mentors": "resnet50,resnet34", "topology.degree": 2})
    strategy = STRATEGIES.get("hybrid")(ctx)
    mentors = {d.device for d in ctx.devices if d.arch in ("resnet50", "resnet34")}
    assert set(strategy.mentors) == mentors
    first = {device: task for device, task, _, _ in strategy.deliveries(1)}
    assert all(first[m].kb_keys == ("skb-test",) and first[m].return_pkb for m in mentors)
    assert all(first[d].method == "dcl" for d in first if d not in mentors)
    strategy.after_round(1, {m: pkb_reply(m) for m in mentors})
    for device, task, to_send, _ in strategy.deliveries(2):
        if device in mentors:
            assert task.kb_keys == ("skb-test",) and to_send == {}
        else:
            assert len(strategy.mentors_of[device]) == 2 and set(strategy.mentors_of[device]) <= mentors
            assert sorted(task.kb_keys) == sorted(f"pkb-hybrid-d{m}-r1" for m in strategy.mentors_of[device])


def test_hybrid_without_mentors_fails_clearly(make_context) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="matches no device"):
        STRATEGIES.get("hybrid")(make_context(**{"devices.architectures": "resnet18:1.0", "topology.hybrid-mentors": "resnet50"}))


def test_fedavg_sends_group_weights_and_counts_them(make_context) -> None:  # type: ignore[no-untyped-def]
    ctx = make_context(**{"devices.architectures": "resnet18:0.5,resnet34:0.5"})
    strategy = STRATEGIES.get("fedavg")(ctx)
    deliveries = strategy.deliveries(1)
    by_arch: dict[str, set[int]] = {}
    for device, task, to_send, weights in deliveries:
        assert weights is not None and task.return_weights and to_send == {}
        by_arch.setdefault(ctx.devices[device].arch, set()).add(id(weights))
    assert all(len(ids) == 1 for ids in by_arch.values())  # one shared record per architecture group
    assert {t.kind for t in strategy.delivery.ledger.transfers} == {"weights"}
    assert len(strategy.delivery.ledger.transfers) == 2 * 12  # cloud->edge and edge->device, per device


def test_running_average_weights_and_integer_buffers() -> None:
    average = RunningAverage()
    average.add({"w": torch.tensor([0.0, 2.0]), "n": torch.tensor(3)}, 1.0)
    average.add({"w": torch.tensor([4.0, 6.0]), "n": torch.tensor(5)}, 3.0)
    out = average.result()
    assert torch.allclose(out["w"], torch.tensor([3.0, 5.0]))
    assert int(out["n"]) == 5


def test_unknown_topology_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError, match="cloud-edge, fedavg, hybrid, local, p2p"):
        STRATEGIES.get("mesh")


@pytest.mark.parametrize("topology", STRATEGIES.names())
def test_absent_devices_get_nothing_and_nothing_is_counted_for_them(make_context, topology: str) -> None:  # type: ignore[no-untyped-def]
    ctx = make_context(**{"faults.dropout": 0.3, "topology.degree": 2})
    strategy = STRATEGIES.get(topology)(ctx)
    for server_round in (1, 2, 3):
        absent = dropped_devices(ctx.cfg.faults, ctx.cfg.devices.num_devices, ctx.cfg.scenario.seed, server_round)
        assert 0 < len(absent) < 12
        before = len(strategy.delivery.ledger.transfers)
        present = {d: task for d, task, _, _ in strategy.deliveries(server_round, absent)}
        assert set(present) == set(range(12)) - absent
        for t in strategy.delivery.ledger.transfers[before:]:  # only present devices send or receive
            assert all(int(end.split("-")[1]) in present for end in (t.src, t.dst) if end.startswith("device-")), t
            if t.tier == "cloud-edge":  # an edge is fed only for devices of it that take part
                assert any(f"edge-{strategy.plans.edge_of(d)}" == t.dst for d in present)
        for device, task in present.items():  # a present peer's latest PKB, else the newest one held
            for key in task.kb_keys:
                peer = int(key.split("-d")[1].split("-")[0]) if key.startswith("pkb-") else None
                if peer is not None:
                    assert key == (strategy.delivery.held_pkb(device, peer) if peer in absent else strategy.delivery.pkbs[peer]), key
        strategy.after_round(server_round, {d: pkb_reply(d) for d, task in present.items() if task.return_pkb})
