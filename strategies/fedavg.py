"""``fedavg``: the weight-sharing baseline, to show what sending encoders costs in bytes.

Devices train with plain DCL; the server averages encoder weights within each
architecture group (weighted by shard size; FedAvg, McMahan et al. 2017) and sends each
device its group's average next round. Round 1 starts every group from one seeded
initialisation. Weights travel cloud -> edge -> device and back, counted on every hop.
"""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, RecordDict

from crlsc_fl.models.encoders import build_encoder
from strategies.base import DevicePlan, KnowledgeTransferStrategy
from strategies.registry import STRATEGIES


def weighted_average(states: list[dict[str, torch.Tensor]], weights: list[float]) -> dict[str, torch.Tensor]:
    """Average state dicts; integer buffers (BatchNorm's batch counters) take the maximum."""
    total = float(sum(weights))
    averaged = {}
    for name, first in states[0].items():
        stacked = torch.stack([s[name] for s in states])
        if first.is_floating_point():
            w = torch.tensor(weights, dtype=first.dtype).view(-1, *[1] * first.dim()) / total
            averaged[name] = (stacked * w).sum(0)
        else:
            averaged[name] = stacked.max(0).values
    return averaged


@STRATEGIES.register("fedavg")
class FedAvgStrategy(KnowledgeTransferStrategy):
    name = "fedavg"

    def setup(self) -> None:
        cfg = self.ctx.cfg
        self.group_weights: dict[str, ArrayRecord] = {}
        for arch in sorted({s.arch for s in self.ctx.devices}):
            torch.manual_seed(cfg.scenario.seed)
            encoder = build_encoder(arch, dim=self.ctx.dim, stem=cfg.devices.stem)
            self.group_weights[arch] = ArrayRecord(torch_state_dict=encoder.state_dict())

    def plan_round(self, server_round: int) -> dict[int, DevicePlan]:
        return {
            s.device: DevicePlan("dcl", weights=self.group_weights[s.arch], return_weights=True) for s in self.ctx.devices
        }

    def after_round(self, server_round: int, replies: dict[int, RecordDict]) -> None:
        groups: dict[str, tuple[list, list]] = {}
        for device, content in replies.items():
            arch = self.ctx.devices[device].arch
            states, sizes = groups.setdefault(arch, ([], []))
            states.append(content.array_records["weights"].to_torch_state_dict())
            sizes.append(float(content.metric_records["metrics"]["num_examples"]))
        for arch, (states, sizes) in groups.items():
            self.group_weights[arch] = ArrayRecord(torch_state_dict=weighted_average(states, sizes))
