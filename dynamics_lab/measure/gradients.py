"""GradientStats: gradient norms, their direction over time, and the gradient noise scale."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from dynamics_lab.linalg.gradients import gradient_noise_scale, per_example_gradients
from dynamics_lab.linalg.hvp import gradient, trainable_parameters
from dynamics_lab.measure.base import Measurement, MeasurementConfig
from dynamics_lab.registry import MEASUREMENTS


class GradientStatsConfig(MeasurementConfig):
    name: Literal["gradients"] = "gradients"
    per_layer: bool = True
    noise_scale: bool = False  # needs per-example gradients: (probe_size x params) memory
    chunk_size: int | None = Field(None, ge=1)


@MEASUREMENTS.register("gradients")
class GradientStats(Measurement):
    """Full-probe-batch gradient norm (total and per parameter tensor), the cosine with the
    previous measurement's gradient, and optionally the simple gradient noise scale."""

    Config = GradientStatsConfig
    prefix = "grad"

    def __init__(self, per_layer: bool = True, noise_scale: bool = False,
                 chunk_size: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.per_layer, self.noise_scale, self.chunk_size = per_layer, noise_scale, chunk_size
        self.previous: torch.Tensor | None = None

    def measure(self, trainer, pl_module, model) -> dict[str, float]:
        loss_fn = self.loss(pl_module)
        g = gradient(model, loss_fn, self.probe, chunk_size=self.chunk_size)
        metrics = {"grad/norm": float(g.norm())}
        if self.per_layer:
            offset = 0
            for name, p in trainable_parameters(model).items():
                metrics[f"grad/norm/{name}"] = float(g[offset:offset + p.numel()].norm())
                offset += p.numel()
        if self.previous is not None:
            metrics["grad/cosine_prev"] = float(torch.nn.functional.cosine_similarity(
                g, self.previous.to(g), dim=0))
        self.previous = g.detach().cpu()
        if self.noise_scale:
            per_example = per_example_gradients(model, loss_fn, self.probe,
                                                chunk_size=self.chunk_size or 256)
            b_simple, g2, trace = gradient_noise_scale(per_example)
            metrics.update({"grad/noise_scale": b_simple, "grad/true_norm_sq": g2,
                            "grad/trace_cov": trace})
        return metrics

    def state_dict(self) -> dict:
        return {"previous": self.previous}

    def load_state_dict(self, state_dict: dict) -> None:
        self.previous = state_dict.get("previous")
