"""Every message kind of the federation survives the trip through its records (crlsc_fl.codec)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from flwr.app import Error, Message, MessageType
from flwr.supercore.task_identity import TaskIdentity

from crlsc_fl import codec
from crlsc_fl.device.device_round import RoundOutcome, RoundTask
from crlsc_fl.kb.knowledge_base import KnowledgeBaseError

SERVER_NODE, DEVICE_NODE = 1, 1007
SCENARIO = {"scenario.name": "ci", "scenario.rounds": 2, "train.lr": 0.05, "kb.templates": "simple"}


@pytest.fixture(autouse=True)
def server_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Instruction messages take their source from the process's task identity, which
    Flower sets in a running ServerApp: set it as the ServerApp's would be."""
    monkeypatch.setattr(TaskIdentity, "_run_id", 42)
    monkeypatch.setattr(TaskIdentity, "_node_id", SERVER_NODE)
    monkeypatch.setattr(TaskIdentity, "_task_id", 0)


def state(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"conv.weight": torch.randn(4, 3, generator=generator), "bn.num_batches_tracked": torch.tensor(seed)}


TASKS = {
    "first round, nothing held": RoundTask("local", 1, "dcl", 384),
    "kb and pkb keys": RoundTask("p2p", 3, "crlsc", 512, ("pkb-p2p-d1-r2", "pkb-p2p-d4-r2"), return_pkb=True, run_key="77",
                                 state_round=2),
    "latest state": RoundTask("cloud-edge", 2, "crlsc", 384, ("skb-abc",), state_round=None),
    "grounded with peer anchors": RoundTask("hybrid", 4, "crlsc-grounded", 64, (), return_pkb=True, anchor_key="anchors-1",
                                            peer_anchor_keys=("pkb-hybrid-d0-r3",), state_round=0),
    "fedavg": RoundTask("fedavg", 2, "dcl", 384, return_weights=True, state_round=1),
}


@pytest.mark.parametrize("task", TASKS.values(), ids=TASKS.keys())
def test_train_message_round_trip(task: RoundTask) -> None:
    blobs = {key: key.encode() * 10 for key in task.kb_keys + task.peer_anchor_keys}
    weights = codec.weights_record(state(1)) if task.return_weights else None
    msg = codec.train_message(DEVICE_NODE, SCENARIO, task, blobs, weights)
    assert msg.metadata.dst_node_id == DEVICE_NODE and msg.metadata.message_type == MessageType.TRAIN
    assert codec.task_of(msg) == task
    assert dict(codec.scenario_items(msg)) == SCENARIO
    assert codec.state_address(msg) == (task.topology, task.run_key)
    assert codec.incoming_kbs(msg.content) == blobs
    received = codec.incoming_weights(msg.content)
    if weights is None:
        assert received is None
    else:
        assert received is not None and all(torch.equal(received[k], v) for k, v in state(1).items())


OUTCOMES = {
    "metrics only": RoundOutcome({"knn_top1": 31.5, "knn_top5": 80.0, "loss": 2.25, "num_examples": 64.0}),
    "with placement": RoundOutcome({"knn_top1": 20.0}, placement={"node": "5f0c" * 14, "host": "worker-7"}),
    "with pkb": RoundOutcome({"knn_top1": 12.0, "pkb_bytes": 3.0}, pkb=b"pkb"),
    "with weights": RoundOutcome({"knn_top1": 50.0, "num_examples": 20.0}, weights=state(2)),
}


@pytest.mark.parametrize("outcome", OUTCOMES.values(), ids=OUTCOMES.keys())
def test_train_reply_round_trip(outcome: RoundOutcome) -> None:
    request = codec.train_message(DEVICE_NODE, SCENARIO, TASKS["first round, nothing held"], {})
    reply = codec.train_reply(request, outcome)
    assert reply.metadata.src_node_id == DEVICE_NODE and reply.metadata.dst_node_id == SERVER_NODE
    assert codec.reply_metrics(reply.content) == outcome.metrics
    assert codec.reply_placement(reply.content) == outcome.placement  # strings travel beside the numbers
    assert codec.reply_row(reply.content) == {**outcome.metrics, **outcome.placement}
    assert codec.reply_accuracy(reply) == outcome.metrics["knn_top1"]
    assert codec.reply_pkb(reply.content) == outcome.pkb
    if outcome.weights is None:
        assert codec.reply_weights_nbytes(reply.content) is None
        return
    raw = sum(t.numel() * t.element_size() for t in outcome.weights.values())
    sent = codec.reply_weights_nbytes(reply.content)  # what the ledger counts: the serialized arrays
    assert sent == codec.weights_nbytes(codec.weights_record(outcome.weights)) and raw <= sent < raw + 256 * len(outcome.weights)
    taken = codec.take_weights(reply.content)
    assert all(torch.equal(taken[k], v) for k, v in outcome.weights.items())
    assert codec.incoming_weights(reply.content) is None  # taken out, so it can be freed


def handshake_case() -> tuple[Message, Message, Callable[[Message, Message], None]]:
    query = codec.handshake_query(DEVICE_NODE)
    reply = codec.handshake_reply(query, partition_id=3, num_partitions=5)

    def check(query: Message, reply: Message) -> None:
        assert query.metadata.message_type == MessageType.QUERY and codec.partition_of(reply) == 3

    return query, reply, check


def decoder_case() -> tuple[Message, Message, Callable[[Message, Message], None]]:
    request = codec.decoder_message(DEVICE_NODE, SCENARIO, "p2p", "77")
    metrics = {"psnr": 11.5, "ssim": 0.25, "bits_per_image": 96.0}
    reply = codec.metrics_reply(request, metrics)

    def check(request: Message, reply: Message) -> None:
        assert request.metadata.message_type == f"{MessageType.TRAIN}.decoder"
        assert codec.state_address(request) == ("p2p", "77") and dict(codec.scenario_items(request)) == SCENARIO
        assert codec.reply_metrics(reply.content) == metrics and codec.reply_accuracy(reply) is None  # no kNN in stage 2

    return request, reply, check


@pytest.mark.parametrize("case", [handshake_case, decoder_case], ids=["handshake", "train.decoder"])
def test_query_and_decoder_round_trip(case: Callable[[], tuple[Message, Message, Callable[[Message, Message], None]]]) -> None:
    request, reply, check = case()
    assert request.metadata.dst_node_id == DEVICE_NODE and reply.metadata.src_node_id == DEVICE_NODE
    check(request, reply)


def test_a_kb_whose_digest_does_not_match_is_rejected() -> None:
    content = codec.train_content(SCENARIO, TASKS["latest state"], {"skb-abc": b"spoilt"}, digests={"skb-abc": "0" * 64})
    with pytest.raises(KnowledgeBaseError, match="'skb-abc' rejected: its 6 bytes do not match the SHA-256"):
        codec.incoming_kbs(content)


def test_error_replies_carry_no_accuracy() -> None:
    request = codec.train_message(DEVICE_NODE, SCENARIO, TASKS["first round, nothing held"], {})
    assert codec.reply_accuracy(Message(Error(code=0, reason="boom"), reply_to=request)) is None


def test_round_metrics_are_the_mean_over_devices() -> None:
    rows = [{"knn_top1": 10.0, "loss": 1.0}, {"knn_top1": 30.0, "loss": 3.0}]
    assert dict(codec.mean_metrics(rows, ("knn_top1", "loss")) or {}) == {"knn_top1": 20.0, "loss": 2.0}
    assert codec.mean_metrics([], ("knn_top1",)) is None
