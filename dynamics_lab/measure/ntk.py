"""NTKAlignment: how the empirical tangent kernel moves and lines up with the labels over training.

On a fixed probe set it logs, at each scheduled step:
  ntk/alignment       centered kernel-target alignment of the empirical NTK (output-traced
                      for several outputs, scalar for one) with the labels: one-hot classes for
                      integer labels, the targets themselves otherwise (regression, +-1 parity)
  ntk/distance_init   kernel_distance(K_0, K_t), K_0 = the kernel at the first measurement
  ntk/velocity        kernel_distance(K_prev, K_t) / steps since the previous measurement
  ntk/kernel_norm     ||K_t||_F
  ntk/param_movement  ||theta_t - theta_0|| / ||theta_0|| over the trainable parameters
With `matrix_free: true` the kernel is never formed: `ntk/alignment` is the Hutchinson estimate
(with `ntk/alignment_stderr`) of the *full* kernel's alignment with vec(Y) vec(Y)^T, which equals
the traced one for single-output models; distance, velocity and norm are then not logged.
K_0, K_prev and theta_0 live in the callback's state_dict, so a resumed run keeps its reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import lightning as L
import torch
from pydantic import Field
from torch import nn

from dynamics_lab.linalg.ntk import (
    empirical_ntk,
    kernel_alignment,
    kernel_distance,
    matrix_free_alignment,
)
from dynamics_lab.measure.base import Measurement, MeasurementConfig
from dynamics_lab.registry import MEASUREMENTS


class NTKConfig(MeasurementConfig):
    name: Literal["ntk"] = "ntk"
    probe_size: int = Field(256, ge=2)
    matrix_free: bool = False
    n_probes: int = Field(16, ge=1)  # Hutchinson probes of the matrix-free path
    chunk_size: int | None = Field(None, ge=1)  # examples per Jacobian chunk; None: by memory


def flat_trainable(model: nn.Module) -> torch.Tensor:
    """Trainable parameters as one detached vector (float64 so that small moves are resolved)."""
    return torch.cat([p.detach().reshape(-1).double() for p in model.parameters()
                      if p.requires_grad])


def kernel_targets(y: torch.Tensor, n_outputs: int) -> torch.Tensor:
    """Targets the kernel is aligned with: one-hot rows for class indices, else y as (n, O)."""
    if not torch.is_floating_point(y):
        return nn.functional.one_hot(y.long(), n_outputs).double()
    return y.reshape(y.shape[0], -1).double()


@MEASUREMENTS.register("ntk")
class NTKAlignment(Measurement):
    """Empirical-NTK alignment, drift from init, velocity and parameter movement on a probe set."""

    Config = NTKConfig
    prefix = "ntk"

    def __init__(self, every: int = 50, log_spaced: bool = False, per_decade: int = 10,
                 probe_size: int = 256, probe_seed: int = 0, matrix_free: bool = False,
                 n_probes: int = 16, chunk_size: int | None = None,
                 loss_fn: Callable | None = None):
        super().__init__(every, log_spaced, per_decade, probe_size, probe_seed, loss_fn)
        self.matrix_free, self.n_probes, self.chunk_size = matrix_free, n_probes, chunk_size
        self.kernel_init: torch.Tensor | None = None
        self.kernel_prev: torch.Tensor | None = None
        self.step_prev: int | None = None
        self.theta_init: torch.Tensor | None = None

    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule,
                model: nn.Module) -> dict[str, float]:
        model.eval()  # a deterministic kernel: no dropout masks
        x, y = self.probe
        ref = next(p for p in model.parameters() if p.requires_grad)
        if torch.is_floating_point(x):
            x = x.to(ref.dtype)
        step = trainer.global_step
        with torch.no_grad():
            n_outputs = model(x[:1]).numel()
        targets = kernel_targets(y, n_outputs)
        metrics = {"ntk/param_movement": self._movement(model)}
        if self.matrix_free:
            generator = torch.Generator(device=x.device).manual_seed(self.probe_seed + step)
            value, stderr = matrix_free_alignment(
                model, x, targets.to(ref.dtype), n_probes=self.n_probes,
                generator=generator, chunk_size=self.chunk_size)
            metrics.update({"ntk/alignment": float(value), "ntk/alignment_stderr": float(stderr)})
            return metrics
        kernel = empirical_ntk(model, x, "scalar" if n_outputs == 1 else "trace",
                               chunk_size=self.chunk_size)
        metrics["ntk/alignment"] = float(kernel_alignment(kernel, targets.to(kernel.dtype)))
        metrics["ntk/kernel_norm"] = float(torch.linalg.matrix_norm(kernel))
        kernel = kernel.detach().double().cpu()  # kept in state: device- and precision-independent
        if self.kernel_init is None:
            self.kernel_init = kernel
        metrics["ntk/distance_init"] = float(kernel_distance(self.kernel_init, kernel))
        if self.kernel_prev is not None and self.step_prev is not None and step > self.step_prev:
            distance = kernel_distance(self.kernel_prev, kernel)
            metrics["ntk/velocity"] = float(distance) / (step - self.step_prev)
        self.kernel_prev, self.step_prev = kernel, step
        return metrics

    def _movement(self, model: nn.Module) -> float:
        theta = flat_trainable(model).cpu()
        if self.theta_init is None:
            self.theta_init = theta
        return float((theta - self.theta_init).norm() / self.theta_init.norm().clamp_min(1e-30))

    # -- checkpointed state -------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"kernel_init": self.kernel_init, "kernel_prev": self.kernel_prev,
                "step_prev": self.step_prev, "theta_init": self.theta_init}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key in ("kernel_init", "kernel_prev", "step_prev", "theta_init"):
            setattr(self, key, state_dict.get(key))
