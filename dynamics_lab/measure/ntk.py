"""NTKAlignment: how the empirical tangent kernel moves and lines up with the labels over training.

On a fixed probe set, in eval mode (no dropout masks: a deterministic kernel), it logs at each
scheduled step:
  ntk/alignment         centered kernel-target alignment of the empirical NTK (output-traced
                        for several outputs, scalar for one) with the labels: one-hot classes for
                        integer labels, the targets themselves otherwise (regression, +-1 parity)
  ntk/alignment_shuffled  the same kernel's alignment with the labels under a fixed random
                        permutation (class labels only). With many classes YY^T is mostly its
                        diagonal, so any kernel with a large diagonal scores well; alignment
                        above this baseline is the part that comes from the labels.
  ntk/distance_init     kernel_distance(K_0, K_t), K_0 = the kernel at the first measurement
  ntk/velocity          kernel_distance(K_prev, K_t) / steps since the previous measurement
  ntk/kernel_norm       ||K_t||_F
  ntk/param_movement    ||theta_t - theta_0|| / ||theta_0|| over the trainable parameters
With `matrix_free: true` the kernel is never formed and a different quantity is logged: the
Hutchinson estimate of the *full* (example x output) kernel's alignment with vec(Y) vec(Y)^T,
as `ntk/alignment_full_est` with `ntk/alignment_full_est_stderr` (and
`ntk/alignment_full_est_shuffled` for class labels). It equals the traced alignment only for
single-output models, so it never goes under `ntk/alignment`; distance, velocity and norm are
not logged. K_0, K_prev and theta_0 live in the callback's state_dict, so a resumed run keeps its
reference.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from pydantic import Field
from torch import nn
from typing_extensions import override

from dynamics_lab.linalg.ntk import (
    empirical_ntk,
    kernel_alignment,
    kernel_distance,
    matrix_free_alignments,
)
from dynamics_lab.measure.base import Measurement, MeasurementConfig
from dynamics_lab.metric_names import NTK
from dynamics_lab.registry import MEASUREMENTS


class NTKConfig(MeasurementConfig):
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


def shuffled(targets: torch.Tensor, seed: int) -> torch.Tensor:
    """Rows of `targets` under a fixed random permutation (the same at every measurement)."""
    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(seed))
    return targets[order.to(targets.device)]


@MEASUREMENTS.register("ntk")
class NTKAlignment(Measurement):
    """Empirical-NTK alignment, drift from init, velocity and parameter movement on a probe set.

    Example:
        >>> trainer = L.Trainer(callbacks=[NTKAlignment(every=100, probe_size=256)])
    """

    Config = NTKConfig
    prefix = NTK.PREFIX
    config: NTKConfig

    def __init__(self, config: NTKConfig | None = None, /, **kwargs: Any):
        super().__init__(config, **kwargs)
        self.kernel_init: torch.Tensor | None = None
        self.kernel_prev: torch.Tensor | None = None
        self.step_prev: int | None = None
        self.theta_init: torch.Tensor | None = None

    @override
    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule,
                model: nn.Module) -> dict[str, float]:
        c, (x, y), step = self.config, self.probe, trainer.global_step
        model.eval()  # a deterministic kernel: no dropout masks (the base restores the mode)
        with torch.no_grad():
            n_outputs = model(x[:1]).numel()
        targets = kernel_targets(y, n_outputs).to(x.device)
        # Class labels get a shuffled-label baseline beside the alignment.
        targets_all = [targets] + ([shuffled(targets, c.probe_seed)]
                                   if not torch.is_floating_point(y) else [])
        metrics = {NTK.PARAM_MOVEMENT: self._movement(model)}
        if c.matrix_free:
            dtype = next(p for p in model.parameters() if p.requires_grad).dtype
            generator = torch.Generator(device=x.device).manual_seed(c.probe_seed + step)
            results = matrix_free_alignments(
                model, x, [t.to(dtype) for t in targets_all], n_probes=c.n_probes,
                generator=generator, chunk_size=c.chunk_size)
            (value, stderr), *baseline = results
            metrics[NTK.ALIGNMENT_FULL_EST] = float(value)
            metrics[NTK.ALIGNMENT_FULL_EST_STDERR] = float(stderr)
            if baseline:
                metrics[NTK.ALIGNMENT_FULL_EST_SHUFFLED] = float(baseline[0][0])
            return metrics
        kernel = empirical_ntk(model, x, "scalar" if n_outputs == 1 else "trace",
                               chunk_size=c.chunk_size)
        alignments = [float(kernel_alignment(kernel, t.to(kernel.dtype))) for t in targets_all]
        metrics[NTK.ALIGNMENT] = alignments[0]
        if len(alignments) > 1:
            metrics[NTK.ALIGNMENT_SHUFFLED] = alignments[1]
        metrics[NTK.KERNEL_NORM] = float(torch.linalg.matrix_norm(kernel))
        kernel = kernel.detach().double().cpu()  # kept in state: device- and precision-independent
        if self.kernel_init is None:
            self.kernel_init = kernel
        metrics[NTK.DISTANCE_INIT] = float(kernel_distance(self.kernel_init, kernel))
        if self.kernel_prev is not None and self.step_prev is not None and step > self.step_prev:
            distance = kernel_distance(self.kernel_prev, kernel)
            metrics[NTK.VELOCITY] = float(distance) / (step - self.step_prev)
        self.kernel_prev, self.step_prev = kernel, step
        return metrics

    def _movement(self, model: nn.Module) -> float:
        theta = flat_trainable(model).cpu()
        if self.theta_init is None:
            self.theta_init = theta
        return float((theta - self.theta_init).norm() / self.theta_init.norm().clamp_min(1e-30))

    # -- checkpointed state -------------------------------------------------------------------

    @override
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "kernel_init": self.kernel_init,
                "kernel_prev": self.kernel_prev, "step_prev": self.step_prev,
                "theta_init": self.theta_init}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for key in ("kernel_init", "kernel_prev", "step_prev", "theta_init"):
            setattr(self, key, state_dict.get(key))
