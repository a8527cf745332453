"""What every measurement callback shares: a schedule, a fixed probe set, safe side effects.

A measurement runs in `on_train_batch_start`, so the metrics it logs at step t describe the
parameters after t optimizer updates, the same convention as the loss and accuracy logs.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch
from pydantic import Field
from torch import nn

from dynamics_lab.schema import NamedSection

Batch = tuple[torch.Tensor, torch.Tensor]


class MeasurementConfig(NamedSection):
    """Fields every measurement accepts; subclasses add their own."""

    every: int = Field(50, ge=1)  # steps between measurements (ignored when log_spaced)
    log_spaced: bool = False  # measure at ~per_decade log-spaced steps instead
    per_decade: int = Field(10, ge=1)
    probe_size: int = Field(1024, ge=1)  # examples in the fixed probe set
    probe_seed: int = 0


class Schedule:
    """When to measure: every n steps from step 0, or log-spaced (0, 1, 2, ... 10, 13, ...)."""

    def __init__(self, every: int = 50, log_spaced: bool = False, per_decade: int = 10):
        self.every, self.log_spaced, self.per_decade = every, log_spaced, per_decade

    def __call__(self, step: int) -> bool:
        if not self.log_spaced:
            return step % self.every == 0
        if step < self.per_decade:
            return True
        # step is on the grid if it is the rounding of 10^(i / per_decade) for some integer i.
        i = round(self.per_decade * math.log10(step))
        return any(round(10 ** (j / self.per_decade)) == step for j in (i - 1, i, i + 1))


def log_metrics(trainer: L.Trainer, metrics: dict[str, float]) -> None:
    """Send metrics to every logger of the trainer at its global step."""
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=trainer.global_step)


@contextlib.contextmanager
def measuring(model: nn.Module) -> Iterator[None]:
    """Gradients on, and the model's mode and every `.grad` exactly as before afterwards."""
    mode = model.training
    grads = {p: p.grad for p in model.parameters()}
    try:
        with torch.enable_grad():
            yield
    finally:
        for p, g in grads.items():
            p.grad = g
        model.train(mode)


def model_of(pl_module: L.LightningModule) -> nn.Module:
    """The network inside a LightningModule (`.model` by convention, else the module itself)."""
    return getattr(pl_module, "model", pl_module)


class Measurement(L.Callback):
    """Base callback: subclasses implement `measure` and return metric name -> value."""

    Config: type[MeasurementConfig] = MeasurementConfig
    prefix: str = "measure"

    def __init__(self, every: int = 50, log_spaced: bool = False, per_decade: int = 10,
                 probe_size: int = 1024, probe_seed: int = 0,
                 loss_fn: Callable | None = None):
        self.schedule = Schedule(every, log_spaced, per_decade)
        self.probe_size, self.probe_seed = probe_size, probe_seed
        self.loss_fn = loss_fn
        self.probe: Batch | None = None
        self._last_step: int | None = None

    # -- probe set ---------------------------------------------------------------------------

    def draw_probe(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Batch:
        """A fixed probe set from the training data, drawn once, on the module's device."""
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "probe_batch"):
            x, y = datamodule.probe_batch(self.probe_size, self.probe_seed)
        else:
            x, y = next(iter(trainer.train_dataloader))[:2]
            x, y = x[: self.probe_size], y[: self.probe_size]
        # Float data follows the network's dtype (64-true precision converts weights, not data).
        dtype = next(model_of(pl_module).parameters()).dtype
        return tuple(t.to(pl_module.device, dtype) if t.is_floating_point()
                     else t.to(pl_module.device) for t in (x, y))

    def loss(self, pl_module: L.LightningModule) -> Callable:
        fn = self.loss_fn or getattr(pl_module, "loss_fn", None)
        if fn is None:
            raise ValueError(f"{type(self).__name__} needs a loss: pass loss_fn= or give the "
                             "LightningModule a `loss_fn` attribute")
        return fn

    # -- hooks -------------------------------------------------------------------------------

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if self.schedule(step) and step != self._last_step:
            self.run(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The final parameters are worth a measurement even off the schedule.
        if trainer.global_step != self._last_step:
            self.run(trainer, pl_module)

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_step = trainer.global_step
        if self.probe is None:
            self.probe = self.draw_probe(trainer, pl_module)
        model = model_of(pl_module)
        try:
            with measuring(model):
                metrics = self.measure(trainer, pl_module, model)
        except Exception as exc:  # a failed measurement is logged; training goes on
            warnings.warn(f"{type(self).__name__} failed at step {trainer.global_step}: {exc}",
                          stacklevel=2)
            metrics = {f"{self.prefix}/failed": 1.0}
        if metrics:
            log_metrics(trainer, metrics)

    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule,
                model: nn.Module) -> dict[str, float]:
        raise TypeError(f"{type(self).__name__} must define measure()")
