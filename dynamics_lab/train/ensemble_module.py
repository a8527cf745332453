"""EnsembleModule: K copies of one architecture trained at once as one vectorized model.

Members never interact. Their parameters are stacked along a leading member axis, one vmapped
`functional_call` runs all of them on the same batch, and the summed loss has independent
gradients per member. Every optimizer the house uses is elementwise, so AdamW on the stacked
tensors is K separate AdamWs; a weight decay that differs per member is applied by hand just
before the optimizer step, exactly where torch applies its own. Each member logs to its own
loggers with DynamicsModule's metric names and step convention.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from dynamics_lab.losses import LOSSES, accuracy
from dynamics_lab.schema import OptimConfig
from dynamics_lab.train.module import (
    SPLITS,
    EvalSums,
    apply_schedule,
    build_optimizer,
    scheduled_lr,
)
from dynamics_lab.train.steps import MAX_FUSED, FusedSteps


class EnsembleModule(FusedSteps):
    """Trains `models` (same architecture) side by side; `member_loggers[m]` gets member m."""

    def __init__(self, models: list[nn.Module], loss: str, optims: list[OptimConfig],
                 member_loggers: list[list], log_every: int = 10, shared_batch: bool = True,
                 max_fused: int = MAX_FUSED):
        super().__init__(max_fused)
        params, buffers = stack_module_state(models)
        self.param_names, self.buffer_names = list(params), list(buffers)
        self.stacked = nn.ParameterList([nn.Parameter(p.detach()) for p in params.values()])
        for i, b in enumerate(buffers.values()):
            self.register_buffer(f"stacked_buffer_{i}", b)
        # The skeleton the members' tensors are swapped into; a tuple keeps it unregistered.
        self.skeleton = (copy.deepcopy(models[0]).to("meta"),)
        self.size = len(models)
        self.loss_name, self.loss_fn = loss, LOSSES[loss]
        self.member_optims = optims
        self.optim_config, self.member_decay, self.per_member_lr = member_hyperparameters(optims)
        self.member_loggers = member_loggers
        self.log_every, self.shared_batch = log_every, shared_batch
        self.diverged = [False] * self.size
        self.lrs = [o.lr for o in optims]  # each member's step size now (what its optimizer holds)
        self._sums = EvalSums()

    def _state(self) -> tuple[dict, dict]:
        buffers = [getattr(self, f"stacked_buffer_{i}") for i in range(len(self.buffer_names))]
        return dict(zip(self.param_names, self.stacked)), dict(zip(self.buffer_names, buffers))

    def forward(self, x: torch.Tensor, shared: bool = True) -> torch.Tensor:
        """Outputs of every member, stacked: x is one batch (shared) or one batch per member."""
        skeleton = self.skeleton[0]

        def one(params, buffers, xb):
            return functional_call(skeleton, (params, buffers), (xb,))

        params, buffers = self._state()
        return vmap(one, in_dims=(0, 0, None if shared else 0))(params, buffers, x)

    def log_member(self, member: int, metrics: dict[str, float]) -> None:
        for logger in self.member_loggers[member]:
            logger.log_metrics(metrics, step=self.global_step)

    def step_loss(self, batch, step: int) -> torch.Tensor | None:
        apply_schedule(self.trainer, self.optim_config, step)
        self.lrs = [o.lr_at(step) if o.scheduled else lr for o, lr in zip(self.member_optims,
                                                                           self.lrs)]
        x, y = batch
        out = self(x, shared=self.shared_batch)
        losses = vmap(self.loss_fn, in_dims=(0, None if self.shared_batch else 0))(out, y)
        if step % self.log_every == 0:
            for m, value in enumerate(losses.detach().cpu().tolist()):
                if self.diverged[m]:
                    continue
                if not math.isfinite(value):
                    self.diverged[m] = True
                else:
                    self.log_member(m, {"train/batch_loss": value,
                                        **scheduled_lr(self.member_optims[m], step)})
        alive = torch.tensor([not d for d in self.diverged], device=losses.device)
        if not alive.any():
            self.trainer.should_stop = True
            return None
        return losses[alive].sum()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Per-member weight decay, where torch's optimizers apply theirs: decoupled for AdamW
        # (p *= 1 - lr * wd, before the update), added to the gradient otherwise. Per-member
        # step sizes (SGD family, whose update is linear in the gradient): the optimizer steps
        # with lr 1 on gradients scaled by each member's lr.
        if self.member_decay is None and not self.per_member_lr:
            return
        step = self.global_step
        lrs = torch.tensor([o.lr_at(step) for o in self.member_optims], dtype=torch.float64)
        with torch.no_grad():
            for p in self.stacked:
                shape = (-1, *([1] * (p.dim() - 1)))
                if self.member_decay is not None:
                    decay = self.member_decay.to(p.device).view(shape)
                    if self.optim_config.name == "adamw":
                        lr = self.optim_config.lr_at(step)
                        p.mul_((1 - lr * decay).to(p.dtype))
                    elif p.grad is not None:
                        p.grad.add_(p * decay.to(p.dtype))
                if self.per_member_lr and p.grad is not None:
                    p.grad.mul_(lrs.to(p.device, p.dtype).view(shape))

    def on_validation_epoch_start(self) -> None:
        self._sums = EvalSums()

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch
        out = self(x)
        acc = None
        if accuracy(out[0], y, self.loss_name) is not None:
            acc = vmap(lambda o: accuracy(o, y, self.loss_name))(out)
        losses = vmap(self.loss_fn, in_dims=(0, None))(out, y)
        self._sums.add(SPLITS[dataloader_idx], len(x), losses, acc)

    def on_validation_epoch_end(self) -> None:
        log = not self.trainer.sanity_checking or self.global_step == 0
        for m in range(self.size):
            if self.diverged[m]:
                continue
            metrics = self._sums.means(member=m)
            if log:
                self.log_member(m, metrics)
            if not math.isfinite(metrics.get("train/loss", 0.0)):
                self.diverged[m] = True
        if all(self.diverged):
            self.trainer.should_stop = True

    def on_update_overflow(self) -> None:
        # One step size for every member: the update overflowed for all of them.
        self.diverged = [True] * self.size
        self.trainer.should_stop = True

    def member_state(self, member: int) -> dict[str, torch.Tensor]:
        """One member's parameters and buffers under the model's own names."""
        params, buffers = self._state()
        return {name: t[member].detach() for name, t in {**params, **buffers}.items()}

    def member_hyper(self, member: int) -> dict[str, float]:
        """The optimizer values that are member `member`'s own: its step size now and its
        weight decay (what its optimizer in a separate run would hold)."""
        return {"lr": self.lrs[member], "weight_decay": self.member_optims[member].weight_decay}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["diverged_members"] = list(self.diverged)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.diverged = list(checkpoint.get("diverged_members", self.diverged))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self.stacked.parameters(), self.optim_config)


def member_hyperparameters(optims: list[OptimConfig]) -> tuple[OptimConfig, torch.Tensor | None,
                                                               bool]:
    """The stacked optimizer's config, and what is applied per member by hand: a weight decay
    tensor where members differ in it (or in step size), and whether step sizes differ."""
    first = optims[0]
    same_lr = len({o.lr for o in optims}) == 1
    if not same_lr and first.name not in ("sgd", "gd"):
        raise ValueError(f"members of an ensemble may differ in optim.lr only with sgd or gd "
                         f"(an update linear in the gradient), not {first.name}")
    same_decay = len({o.weight_decay for o in optims}) == 1 and same_lr
    update: dict = {} if same_decay else {"weight_decay": 0.0}
    if not same_lr:  # the schedule is applied per member; the stacked optimizer keeps lr 1
        update.update(lr=1.0, warmup_steps=0, decay_steps=[])
    decay = None if same_decay else torch.tensor([o.weight_decay for o in optims],
                                                 dtype=torch.float64)
    return first.model_copy(update=update), decay, not same_lr
