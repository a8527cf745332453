"""Singular values of a linear network's end-to-end map and its strength along each teacher mode.

`modes/sv_i` are the singular values of W = W_L ... W_1 (descending); `modes/strength_i` is
u_i^T W v_i for the teacher's i-th mode (U, S, V), in the teacher's own order. The teacher comes
from the datamodule's `teacher` attribute (tasks/low_rank_regression.py) or the `teacher=` argument
when the callback is used in another Trainer. These are the curves of stepwise learning.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from pydantic import Field
from torch import nn
from typing_extensions import override

from dynamics_lab.measure.base import Measurement, MeasurementConfig
from dynamics_lab.metric_names import Modes as ModeNames
from dynamics_lab.offers import TEACHER, offered
from dynamics_lab.registry import MEASUREMENTS

Teacher = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class ModesConfig(MeasurementConfig):
    n_singular: int | None = Field(None, ge=1)  # singular values logged; None: teacher rank


def end_to_end(model: nn.Module) -> torch.Tensor:
    """`model.end_to_end()` when defined, else the product of its nn.Linear weights in order."""
    if hasattr(model, "end_to_end"):
        return model.end_to_end()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no end_to_end() and no nn.Linear layers")
    product = linears[0].weight
    for layer in linears[1:]:
        product = layer.weight @ product
    return product


def mode_strengths(W: torch.Tensor, U: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """u_i^T W v_i for every column pair (u_i, v_i) of U (out x r) and V (in x r)."""
    return torch.einsum("or,oi,ir->r", U.to(W.dtype), W, V.to(W.dtype))


@MEASUREMENTS.register("modes")
class Modes(Measurement):
    """Logs `modes/sv_i` and, when a teacher is known, `modes/strength_i`."""

    Config = ModesConfig
    prefix = ModeNames.PREFIX
    uses_probe = False  # it reads the weights only
    config: ModesConfig

    def __init__(self, config: ModesConfig | None = None, /, *, teacher: Teacher | None = None,
                 **kwargs: Any):
        super().__init__(config, **kwargs)
        self.teacher = teacher

    def teacher_of(self, trainer: L.Trainer) -> Teacher | None:
        if self.teacher is not None:
            return self.teacher
        return offered(getattr(trainer, "datamodule", None), TEACHER)

    @override
    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule,
                model: nn.Module) -> dict[str, float]:
        with torch.no_grad():
            W = end_to_end(model).detach().double().cpu()
        teacher = self.teacher_of(trainer)
        metrics = {}
        if teacher is not None:
            U, _, V = teacher
            for i, value in enumerate(mode_strengths(W, U.cpu(), V.cpu()).tolist()):
                metrics[ModeNames.strength(i)] = value
        n = self.config.n_singular or (len(teacher[1]) if teacher is not None else min(W.shape))
        for i, value in enumerate(torch.linalg.svdvals(W)[:n].tolist()):
            metrics[ModeNames.singular_value(i)] = value
        return metrics
