"""The stage-1 training loop shared by every method (solo-learn style).

:class:`Stage1Method` owns the loop: batching, two augmented views per image, Adam with
cosine annealing (paper sec. 4.1: lr 0.005, batch 256, tau 0.1), step timing and the
optimizer state that a federated device keeps between rounds. A method overrides only
:meth:`training_loss` (and, if it keeps extra state such as a support queue, the
``extra_state`` hooks), and computes its embeddings with :meth:`Stage1Method.embed`, which
owns how a step's forward work runs (measured in ``benchmarks/step_cost.py``):

- ``one_pass``: every view of the step (both views, and a grounded method's anchors) in one
  forward pass, so one BatchNorm batch and one set of kernel launches instead of two;
- ``channels_last``: the encoder and its inputs in NHWC layout (faster convolutions on CPUs
  with oneDNN and on tensor-core GPUs);
- ``precision``: ``bfloat16`` runs the forward pass under autocast (CPUs with AVX512-BF16 or
  AMX, GPUs from Ampere on); embeddings leave :meth:`embed` as float32, so losses, the
  retrieval of eq. 1-2 and the optimizer stay in float32.

The method runs on ``device`` (default: where the encoder is; :mod:`crlsc_fl.accelerator`).
The shard's uint8 pixels go to the device once per :meth:`fit` call; the random draws (batch
order, augmentation parameters, noise) stay on the CPU generator, so a seed gives the same
batches and views on any device. On the CPU nothing is copied.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, get_args

import numpy as np
import torch
from pydantic import Field
from torch import nn

from crlsc_fl.accelerator import check_precision, module_device
from crlsc_fl.augment.simclr import AugmentConfig, SimCLRAugment
from crlsc_fl.kb.knowledge_base import KnowledgeBase
from crlsc_fl.loss.dcl_loss import DCLLoss
from crlsc_fl.methods.needs import MethodInputs, Need
from crlsc_fl.models.encoders import LocalEncoder
from crlsc_fl.validation import component

BatchSize = Annotated[int, Field(ge=2)]  # contrastive losses need negatives in the batch
Positive = Annotated[float, Field(gt=0)]
Precision = Literal["float32", "bfloat16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


@component
class TrainConfig:
    """Optimisation settings. ``total_steps`` (or ``total_epochs``) sets the cosine schedule's
    length when a device trains in several calls (federated rounds); ``None`` means the steps
    of the first call. ``total_steps``, ``total_epochs``, ``seed`` and ``augment`` are set by
    the code that trains (a federated device derives them from the scenario), not by a
    scenario's ``[train]`` table. ``one_pass``, ``channels_last`` and ``precision``: how the
    forward work of a step runs (module docstring). The fields' descriptions say the rest."""

    batch_size: Annotated[BatchSize, Field(description="images per step (the paper: 256)")] = 256
    lr: Annotated[Positive, Field(description="Adam learning rate, annealed by a cosine schedule (the paper: 0.005)")] = 0.005
    weight_decay: Annotated[float, Field(ge=0, description="Adam weight decay")] = 0.0
    temperature: Annotated[Positive, Field(description="temperature of the contrastive loss (the paper: 0.1)")] = 0.1
    one_pass: Annotated[
        bool, Field(description="every view of a step (and a grounded method's anchors) in one forward pass: one BatchNorm batch")
    ] = False
    channels_last: Annotated[
        bool, Field(description="encoder and inputs in NHWC layout (faster convolutions on CPUs with oneDNN and tensor-core GPUs)")
    ] = False
    precision: Annotated[
        Precision, Field(description="forward pass precision: `float32` or `bfloat16` autocast (losses and optimizer stay float32)")
    ] = "float32"
    total_epochs: Annotated[int, Field(ge=1)] | None = Field(default=None, exclude=True)
    total_steps: Annotated[int, Field(ge=1)] | None = Field(default=None, exclude=True)
    seed: int = Field(default=0, exclude=True)
    augment: AugmentConfig = Field(default_factory=AugmentConfig, exclude=True)


@dataclass
class FitResult:
    epoch_losses: list[float]
    step_seconds: list[float]

    @property
    def steps(self) -> int:
        return len(self.step_seconds)

    @property
    def mean_step_seconds(self) -> float:
        # The first step pays one-off costs (allocations, lazy init): leave it out when we can.
        times = self.step_seconds[1:] or self.step_seconds
        return float(np.mean(times)) if times else 0.0


class Stage1Method(nn.Module):
    """Base class: a local encoder trained with two views and a contrastive loss.

    A subclass declares what it needs besides the encoder and the ``[train]`` settings
    (:mod:`crlsc_fl.methods.needs`): ``needs`` must be given, ``optional`` is used when given,
    and ``settings_table`` names the scenario table of its own settings (``None``: it has none).
    :meth:`build` makes it from those pieces; the constructor stays the direct way in."""

    name: ClassVar[str] = "base"
    needs: ClassVar[frozenset[Need]] = frozenset()
    optional: ClassVar[frozenset[Need]] = frozenset()
    settings_table: ClassVar[str | None] = None

    @classmethod
    def uses(cls) -> frozenset[Need]:
        """Every input the method trains with when given: its needs and its optional inputs."""
        return cls.needs | cls.optional

    @classmethod
    def build(
        cls, encoder: LocalEncoder, config: TrainConfig, inputs: MethodInputs, settings: object = None,
        device: torch.device | str | None = None,
    ) -> Stage1Method:
        """The method from its declared inputs (checked against :attr:`needs` and
        :attr:`optional`) and ``settings``, the validated config of its own scenario table
        (:attr:`settings_table`; ``None``: its defaults)."""
        inputs.check(cls.name, cls.needs, cls.optional)
        return cls(encoder, config, device=device, **cls.options(inputs, settings))

    @classmethod
    def options(cls, inputs: MethodInputs, settings: object) -> dict[str, Any]:
        """The constructor's keyword arguments from checked inputs and the method's own
        settings: none for a method that needs nothing."""
        return {}

    def __init__(
        self, encoder: LocalEncoder, config: TrainConfig | None = None, kb: KnowledgeBase | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.config = config or TrainConfig()
        # the encoder is moved (in place) to ``device``; None keeps it where it is
        self.device = module_device(encoder) if device is None else torch.device(device)
        check_precision(self.device, self.config.precision)
        if device is not None:
            encoder = encoder.to(self.device)
        # NHWC parameters; state dicts load into either layout, so stored states are unaffected
        self.encoder = encoder.to(memory_format=torch.channels_last) if self.config.channels_last else encoder
        self.loss_fn: nn.Module = DCLLoss(self.config.temperature)
        self.augment = SimCLRAugment(self.config.augment)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.CosineAnnealingLR | None = None
        self.kb: KnowledgeBase | None = None
        if kb is not None or Need.KB in self.needs:
            self.set_knowledge_base(kb)

    def set_knowledge_base(self, kb: KnowledgeBase | None) -> None:
        """Swap the KB that guides training (e.g. new peer PKBs each federated round)."""
        if kb is None:
            if Need.KB in self.needs:
                raise ValueError(f"method {self.name!r} needs a knowledge base; got none")
            self.kb = None
            return
        kb.check_dim(self.encoder.dim)
        self.kb = kb

    @abstractmethod
    def training_loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """The loss of one batch of two augmented views (B, 3, H, W)."""

    def _autocast(self, device: torch.device) -> AbstractContextManager[Any]:
        if self.config.precision == "float32":
            return nullcontext()
        return torch.autocast(device.type, dtype=getattr(torch, self.config.precision))

    def embed(self, *passes: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        """The encoder's float32 projections of every view, in the order given. Each tuple
        of ``passes`` is one forward pass (one BatchNorm batch); with ``one_pass`` all of
        them run as a single pass."""
        views = [view for group in passes for view in group]
        groups = [tuple(views)] if self.config.one_pass else list(passes)
        out: list[torch.Tensor] = []
        for group in groups:
            x = torch.cat(group) if len(group) > 1 else group[0]
            if self.config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast(x.device):
                z = self.encoder(x)
            out.extend(z.float().split([len(v) for v in group]))
        return out

    def _check_bfloat16_shapes(self, image_size: tuple[int, int]) -> None:
        """Refuse a known-wrong CPU kernel before training: with bfloat16 autocast, oneDNN's
        weight gradient of a strided convolution (kernel > 1) whose input map is 1x1 is garbage,
        NaN or inf (measured with torch 2.14: 10 of 10 trials, either memory layout; 2x2 and larger
        maps are right). 16 px images reach such a map in a ResNet's layer4 with the imagenet stem."""
        if self.config.precision != "bfloat16" or self.device.type != "cpu":
            return
        one_by_one: list[str] = []
        hooks = [module.register_forward_pre_hook(lambda m, args, name=name: one_by_one.append(name) if args[0].shape[-2:] == (1, 1) else None)
                 for name, module in self.encoder.named_modules()
                 if isinstance(module, nn.Conv2d) and max(module.stride) > 1 and max(module.kernel_size) > 1]
        try:
            was_training = self.encoder.training
            with torch.no_grad():
                self.encoder.eval()
                self.encoder(torch.zeros(1, 3, *image_size, device=self.device))
            self.encoder.train(was_training)
        finally:
            for hook in hooks:
                hook.remove()
        if one_by_one:
            raise ValueError(
                f"train.precision='bfloat16' on the CPU with {image_size[0]}x{image_size[1]} images: {one_by_one[0]} is a strided "
                "convolution over a 1x1 map, whose bfloat16 weight gradient the CPU kernel gets wrong (NaN or garbage weights); "
                "use larger images (32 px with the imagenet stem), the cifar stem, or train.precision='float32'"
            )

    # -- the loop -----------------------------------------------------------------------
    def _ensure_optimizer(self, steps_per_epoch: int, first_call_steps: int) -> None:
        if self.optimizer is not None:
            return
        c = self.config
        total = max(1, c.total_steps or (steps_per_epoch * c.total_epochs if c.total_epochs else first_call_steps))
        self.optimizer = torch.optim.Adam(self.encoder.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=total)

    def fit(self, images: np.ndarray, epochs: int = 1, steps: int | None = None) -> FitResult:
        """Train on (N, H, W, 3) uint8 images for ``epochs`` epochs, or for exactly ``steps``
        steps when given (batches drawn from consecutive reshuffled epochs; a small shard
        then sees more epochs than a large one for the same compute). Drop-last batches."""
        if epochs < 0:
            raise ValueError(f"epochs={epochs} must be >= 0")
        if steps is not None and steps < 0:
            raise ValueError(f"steps={steps} must be >= 0")
        pixels = torch.from_numpy(np.require(images, requirements=["C", "W"])).to(self.device)  # uint8: 1/4 of the bytes
        count = len(pixels)
        if count < 2:
            raise ValueError(f"need at least 2 images to train, got {count}")
        batch = min(self.config.batch_size, count)
        steps_per_epoch = count // batch
        total = steps if steps is not None else steps_per_epoch * epochs
        self._check_bfloat16_shapes((pixels.shape[1], pixels.shape[2]))
        self._ensure_optimizer(steps_per_epoch, total)
        assert self.optimizer is not None and self.scheduler is not None
        self.encoder.train()
        losses: list[float] = []
        step_seconds: list[float] = []
        epoch_loss, epoch_steps = 0.0, 0
        order = torch.empty(0, dtype=torch.long)
        for step in range(total):
            position = step % steps_per_epoch
            if position == 0:
                order = torch.randperm(count, generator=self.generator).to(self.device)
            start = time.perf_counter()
            x = pixels[order[position * batch : (position + 1) * batch]].permute(0, 3, 1, 2).float().div_(255)
            loss = self.training_loss(self.augment(x, self.generator), self.augment(x, self.generator))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.scheduler.last_epoch < self.scheduler.T_max:
                self.scheduler.step()
            loss_value = loss.item()  # on a GPU this waits for the step, so step_seconds is its real time
            step_seconds.append(time.perf_counter() - start)
            epoch_loss, epoch_steps = epoch_loss + loss_value, epoch_steps + 1
            if epoch_steps == steps_per_epoch or step == total - 1:
                losses.append(epoch_loss / epoch_steps)
                epoch_loss, epoch_steps = 0.0, 0
        return FitResult(losses, step_seconds)

    # -- state a device keeps between federated rounds ------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def training_state(self, with_optimizer: bool = True) -> dict[str, Any]:
        """Everything needed to resume training. ``with_optimizer=False`` leaves out Adam's
        moments (two copies of the weights): the schedule position and lr are still kept."""
        return {
            "encoder": self.encoder.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer and with_optimizer else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "lr": [group["lr"] for group in self.optimizer.param_groups] if self.optimizer else None,
            "generator": self.generator.get_state(),
            "extra": self.extra_state(),
        }

    def load_training_state(self, state: dict[str, Any], steps_per_epoch: int, first_call_steps: int) -> None:
        self.encoder.load_state_dict(state["encoder"])
        if state.get("scheduler") is not None:
            self._ensure_optimizer(steps_per_epoch, first_call_steps)
            assert self.optimizer is not None and self.scheduler is not None
            if state.get("optimizer") is not None:
                self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            # The cosine schedule updates lr recursively from the current value: restore it.
            for group, lr in zip(self.optimizer.param_groups, state["lr"]):
                group["lr"] = lr
        self.generator.set_state(state["generator"])
        self.load_extra_state(state.get("extra", {}))
