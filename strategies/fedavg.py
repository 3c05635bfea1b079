"""``fedavg``: the weight-sharing baseline, to show what sending encoders costs in bytes.

Devices train with plain DCL; the server averages encoder weights within each
architecture group (weighted by shard size; FedAvg, McMahan et al. 2017) and sends each
device its group's average next round. Round 1 starts every group from one seeded
initialisation. Weights travel cloud -> edge -> device and back, counted on every hop.
Replies are folded into a running average as they arrive and their weights dropped, so
the server holds one state dict per group, not one per device.
"""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, RecordDict

from crlsc_fl import codec
from crlsc_fl.bookkeeping.knowledge_delivery import DevicePlan
from crlsc_fl.methods import PLAIN_METHOD
from crlsc_fl.models.encoders import build_encoder
from strategies.base import KnowledgeTransferStrategy
from strategies.registry import STRATEGIES


class RunningAverage:
    """Weighted running mean of state dicts; integer buffers (BatchNorm's batch counters)
    keep the maximum. Holds one state dict, however many are added."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.total = 0.0

    def add(self, state: dict[str, torch.Tensor], weight: float) -> None:
        for name, tensor in state.items():
            if tensor.is_floating_point():
                value = tensor.double() * weight
                self.sums[name] = self.sums[name] + value if name in self.sums else value
            else:
                self.sums[name] = torch.maximum(self.sums[name], tensor) if name in self.sums else tensor.clone()
        self.total += weight

    def result(self) -> dict[str, torch.Tensor]:
        return {
            name: (value / self.total).float() if value.is_floating_point() else value for name, value in self.sums.items()
        }


@STRATEGIES.register("fedavg")
class FedAvgStrategy(KnowledgeTransferStrategy):
    name = "fedavg"

    def setup(self) -> None:
        cfg = self.ctx.cfg
        self.group_weights: dict[str, ArrayRecord] = {}
        self.running: dict[str, RunningAverage] = {}
        widths = {s.arch: s.width for s in self.ctx.devices}  # one width per architecture
        for arch in sorted(widths):
            torch.manual_seed(cfg.scenario.seed)
            encoder = build_encoder(arch, dim=self.ctx.dim, stem=cfg.devices.stem, width=widths[arch])
            self.group_weights[arch] = codec.weights_record(encoder.state_dict())

    def plan_round(self, server_round: int) -> dict[int, DevicePlan]:
        return {
            s.device: DevicePlan(PLAIN_METHOD, weights=self.group_weights[s.arch], return_weights=True) for s in self.ctx.devices
        }

    def consume_reply(self, server_round: int, device: int, content: RecordDict) -> None:
        """Fold the device's weights into its group's running average, then drop them."""
        arch = self.ctx.devices[device].arch
        state = codec.take_weights(content)
        self.running.setdefault(arch, RunningAverage()).add(state, float(codec.reply_metrics(content)["num_examples"]))

    def after_round(self, server_round: int, replies: dict[int, RecordDict]) -> None:
        for arch, average in self.running.items():
            self.group_weights[arch] = codec.weights_record(average.result())
        self.running = {}

    def extra_state(self) -> dict:
        return {"group_weights": {arch: codec.record_weights(record) for arch, record in self.group_weights.items()}}

    def load_extra_state(self, state: dict) -> None:
        self.group_weights = {arch: codec.weights_record(sd) for arch, sd in state["group_weights"].items()}
