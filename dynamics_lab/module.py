"""DynamicsModule: a model, its loss and optimizer, and sparse logging of loss and accuracy."""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import nn

from dynamics_lab.losses import LOSSES, accuracy
from dynamics_lab.schema import OptimConfig

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


class DynamicsModule(L.LightningModule):
    """Trains `model` with a named loss and logs what the dynamics literature plots.

    Every `log_every` steps: the loss of the batch being trained on (`train/batch_loss`).
    Every evaluation (and once before training): loss and accuracy on the whole train and
    held-out splits. Metrics go to the loggers at step t = after t optimizer updates, which is
    why they bypass `self.log`'s epoch/step bookkeeping. A non-finite loss stops training and
    marks the module `diverged`.
    """

    def __init__(self, model: nn.Module, loss: str, optim: OptimConfig, log_every: int = 10):
        super().__init__()
        self.model = model
        self.loss_name = loss
        self.loss_fn = LOSSES[loss]
        self.optim_config = optim
        self.log_every = log_every
        self.diverged = False
        self._sums: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        """Send metrics to every logger at the current global step."""
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.global_step)

    def training_step(self, batch, batch_idx: int):
        x, y = batch
        loss = self.loss_fn(self.model(x), y)
        # Only scheduled steps pay for the host sync that reading the loss implies.
        if self.global_step % self.log_every == 0:
            value = loss.item()
            if not math.isfinite(value):
                self._diverge()
                return None
            self.log_metrics({"train/batch_loss": value})
        return loss

    def on_validation_epoch_start(self) -> None:
        self._sums = {}

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch
        out = self.model(x)
        split = SPLITS[dataloader_idx]
        # Sums over chunks, divided once at the end: exact means whatever the chunking.
        sums = {"loss": self.loss_fn(out, y) * len(x), "n": torch.tensor(len(x))}
        acc = accuracy(out, y, self.loss_name)
        if acc is not None:
            sums["acc"] = acc * len(x)
        for key, value in sums.items():
            name = f"{split}/{key}"
            self._sums[name] = self._sums.get(name, 0) + value.detach().double().cpu()

    def on_validation_epoch_end(self) -> None:
        metrics = {}
        for split in SPLITS:
            n = self._sums.pop(f"{split}/n", None)
            for key in ("loss", "acc"):
                total = self._sums.get(f"{split}/{key}")
                if n is not None and total is not None:
                    metrics[f"{split}/{key}"] = float(total / n)
        if not self.trainer.sanity_checking or self.global_step == 0:
            self.log_metrics(metrics)
        if not math.isfinite(metrics.get("train/loss", 0.0)):
            self._diverge()

    def _diverge(self) -> None:
        self.diverged = True
        self.trainer.should_stop = True

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self.model.parameters(), self.optim_config)
