"""GradientStats: gradient norms, their direction over time, and the gradient noise scale."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from typing_extensions import override

from dynamics_lab.linalg.gradients import gradient_noise_scale, per_example_gradients
from dynamics_lab.linalg.hvp import gradient, trainable_parameters
from dynamics_lab.measure.base import Measurement, MeasurementConfig
from dynamics_lab.metric_names import Gradients
from dynamics_lab.registry import MEASUREMENTS


class GradientStatsConfig(MeasurementConfig):
    per_layer: bool = True
    noise_scale: bool = False  # needs per-example gradients: (probe_size x params) memory
    chunk_size: int | None = Field(None, ge=1)


@MEASUREMENTS.register("gradients")
class GradientStats(Measurement):
    """Full-probe-batch gradient norm (total and per parameter tensor), the cosine with the
    previous measurement's gradient, and optionally the simple gradient noise scale.

    Logged under `grad/`: norm, norm/<param>, cosine_prev; noise_scale, true_norm_sq, trace_cov.

    Example:
        >>> callback = GradientStats(GradientStatsConfig(every=10, noise_scale=True))
        >>> trainer = L.Trainer(callbacks=[callback])  # the same as GradientStats(every=10, ...)
    """

    Config = GradientStatsConfig
    prefix = Gradients.PREFIX
    needs_loss = True
    config: GradientStatsConfig

    def __init__(self, config: GradientStatsConfig | None = None, /, **kwargs: Any):
        super().__init__(config, **kwargs)
        self.previous: torch.Tensor | None = None

    @override
    def measure(self, trainer, pl_module, model) -> dict[str, float]:
        c, loss_fn = self.config, self.loss(pl_module)
        g = gradient(model, loss_fn, self.probe, chunk_size=c.chunk_size, seed=c.probe_seed)
        metrics = {Gradients.NORM: float(g.norm())}
        if c.per_layer:
            offset = 0
            for name, p in trainable_parameters(model).items():
                metrics[Gradients.norm_of(name)] = float(g[offset:offset + p.numel()].norm())
                offset += p.numel()
        if self.previous is not None:
            metrics[Gradients.COSINE_PREV] = float(torch.nn.functional.cosine_similarity(
                g, self.previous.to(g), dim=0))
        self.previous = g.detach().cpu()
        if c.noise_scale:
            per_example = per_example_gradients(model, loss_fn, self.probe,
                                                chunk_size=c.chunk_size or 256)
            b_simple, g2, trace = gradient_noise_scale(per_example)
            metrics.update({Gradients.NOISE_SCALE: b_simple, Gradients.TRUE_NORM_SQ: g2,
                            Gradients.TRACE_COV: trace})
        return metrics

    @override
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "previous": self.previous}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.previous = state_dict.get("previous")
