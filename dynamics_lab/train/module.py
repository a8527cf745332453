"""DynamicsModule: a model, its loss and optimizer, and sparse logging of loss and accuracy."""

from __future__ import annotations

import math

import torch
from torch import nn

from dynamics_lab.losses import LOSSES, accuracy
from dynamics_lab.schema import OptimConfig
from dynamics_lab.train.steps import MAX_FUSED, FusedSteps

SPLITS = ("train", "val")  # order of the evaluation dataloaders


def build_optimizer(params, config: OptimConfig) -> torch.optim.Optimizer:
    """The optimizer a config names, with exactly the hyperparameters the config records."""
    if config.name in ("adamw", "adam"):
        cls = torch.optim.AdamW if config.name == "adamw" else torch.optim.Adam
        return cls(params, lr=config.lr, betas=config.betas, eps=config.eps,
                   weight_decay=config.weight_decay)
    momentum = 0.0 if config.name == "gd" else config.momentum
    return torch.optim.SGD(params, lr=config.lr, momentum=momentum,
                           weight_decay=config.weight_decay)


def apply_schedule(trainer, config: OptimConfig, step: int) -> None:
    """Set the step size of the coming update from the config's schedule (when it has one).

    Not torch.optim.lr_scheduler: the step size is derived from the step alone, so a resume (and
    a fused block that steps the optimizer directly) needs no scheduler state or step() calls
    kept in sync, and it is exactly the float `lr_at` gives (LambdaLR would multiply by base_lr).
    """
    if config.scheduled:
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = config.lr_at(step)


def scheduled_lr(config: OptimConfig, step: int) -> dict[str, float]:
    """{"train/lr": the step size of update `step`} under a schedule; {} without one."""
    return {"train/lr": config.lr_at(step)} if config.scheduled else {}


class EvalSums:
    """Loss and accuracy summed over evaluation chunks and divided once at the end, so the means
    are exact whatever the chunking. Values may carry a leading member axis (ensembles)."""

    def __init__(self) -> None:
        self.totals: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, split: str, n: int, loss: torch.Tensor, acc: torch.Tensor | None) -> None:
        """One chunk of `n` examples: its mean loss (and accuracy, for classifiers)."""
        self.counts[split] = self.counts.get(split, 0) + n
        for key, mean in (("loss", loss), ("acc", acc)):
            if mean is not None:
                name = f"{split}/{key}"
                self.totals[name] = self.totals.get(name, 0) + (mean * n).detach().double().cpu()

    def means(self, member: int | None = None) -> dict[str, float]:
        """`split/loss` and `split/acc` over everything added (of one member, for ensembles)."""
        metrics = {}
        for name, total in self.totals.items():
            mean = total / self.counts[name.split("/")[0]]
            metrics[name] = float(mean if member is None else mean[member])
        return metrics


class DynamicsModule(FusedSteps):
    """Trains `model` with a named loss and logs what the dynamics literature plots.

    Every `log_every` steps: the loss of the batch being trained on (`train/batch_loss`).
    Every evaluation (and once before training): loss and accuracy on the whole train and
    held-out splits. Metrics go to the loggers at step t = after t optimizer updates, which is
    why they bypass `self.log`'s epoch/step bookkeeping. A non-finite loss stops training and
    marks the module `diverged`. A Lightning step may run several optimizer steps (`steps.py`;
    `max_fused=1`: one each).
    """

    def __init__(self, model: nn.Module, loss: str, optim: OptimConfig, log_every: int = 10,
                 max_fused: int = MAX_FUSED):
        super().__init__(max_fused)
        self.model = model
        self.loss_name = loss
        self.loss_fn = LOSSES[loss]
        self.optim_config = optim
        self.log_every = log_every
        self.diverged = False
        self._sums = EvalSums()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        """Send metrics to every logger at the current global step."""
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.global_step)

    def step_loss(self, batch, step: int) -> torch.Tensor | None:
        apply_schedule(self.trainer, self.optim_config, step)
        x, y = batch
        loss = self.loss_fn(self.model(x), y)
        # Only scheduled steps pay for the host sync that reading the loss implies.
        if step % self.log_every == 0:
            value = loss.item()
            if not math.isfinite(value):
                self._diverge()
                return None
            self.log_metrics({"train/batch_loss": value, **scheduled_lr(self.optim_config, step)})
        return loss

    def on_validation_epoch_start(self) -> None:
        self._sums = EvalSums()

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch
        out = self.model(x)
        self._sums.add(SPLITS[dataloader_idx], len(x), self.loss_fn(out, y),
                       accuracy(out, y, self.loss_name))

    def on_validation_epoch_end(self) -> None:
        metrics = self._sums.means()
        if not self.trainer.sanity_checking or self.global_step == 0:
            self.log_metrics(metrics)
        if not math.isfinite(metrics.get("train/loss", 0.0)):
            self._diverge()

    def _diverge(self) -> None:
        self.diverged = True
        self.trainer.should_stop = True

    def on_update_overflow(self) -> None:
        self._diverge()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self.model.parameters(), self.optim_config)
