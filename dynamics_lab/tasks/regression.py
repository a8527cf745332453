"""Synthetic regression x ~ N(0, I_d) -> y, for squared-loss dynamics such as the edge of stability.

Targets come from a random fixed teacher (a tanh network, or a Chebyshev polynomial of a random
projection), normalised to unit variance per output so the loss scale does not depend on `dim`.
Everything is drawn from one generator seeded by `seed`, so the data is a function of the
config alone. The `full` EoS profile uses dim=3072, 5000 examples, 10 outputs: the shape of the
CIFAR-10 subset of Cohen et al. (2021), with no download.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from dynamics_lab.registry import TASKS
from dynamics_lab.schema import NamedSection, Seed
from dynamics_lab.tasks.base import Batch, TaskSpec, TensorTask


class TeacherRegressionConfig(NamedSection):
    dim: int = Field(20, ge=1)  # input dimension (3072 = an image-sized input)
    n_outputs: int = Field(1, ge=1)
    n_train: int = Field(500, ge=2)
    n_val: int = Field(500, ge=1)
    teacher: Literal["tanh_mlp", "chebyshev"] = "tanh_mlp"
    teacher_width: int = Field(32, ge=1)  # hidden units of the tanh teacher
    degree: int = Field(3, ge=0)  # Chebyshev degree (teacher=chebyshev)
    noise: float = Field(0.0, ge=0)  # std of Gaussian label noise, added after normalisation
    seed: Seed = 0  # data and teacher; independent of the model-init seed


def chebyshev(t: torch.Tensor, degree: int) -> torch.Tensor:
    """T_degree(t) by the three-term recurrence (any t, not only [-1, 1])."""
    prev, cur = torch.ones_like(t), t
    if degree == 0:
        return prev
    for _ in range(degree - 1):
        prev, cur = cur, 2 * t * cur - prev
    return cur


@TASKS.register("teacher_regression")
class TeacherRegression(TensorTask):
    """Gaussian inputs, targets from a random teacher, squared loss."""

    Config = TeacherRegressionConfig

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(input_shape=(self.config.dim,), n_outputs=self.config.n_outputs,
                        loss="squared")

    def teacher(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Noise-free targets, one column per output, before normalisation."""
        c = self.config
        if c.teacher == "chebyshev":
            w = torch.randn(c.dim, c.n_outputs, generator=g, dtype=torch.float64)
            t = x @ (w / w.norm(dim=0))  # each projection ~ N(0, 1)
            return chebyshev(t, c.degree)
        w1 = torch.randn(c.dim, c.teacher_width, generator=g, dtype=torch.float64)
        w2 = torch.randn(c.teacher_width, c.n_outputs, generator=g, dtype=torch.float64)
        return torch.tanh(x @ w1 / c.dim**0.5) @ w2 / c.teacher_width**0.5

    def build(self) -> dict[str, Batch]:
        c = self.config
        g = torch.Generator().manual_seed(c.seed)
        x = torch.randn(c.n_train + c.n_val, c.dim, generator=g, dtype=torch.float64)
        y = self.teacher(x, g)
        # Statistics of the training split only, so val carries no information into training.
        mean, std = y[: c.n_train].mean(0), y[: c.n_train].std(0).clamp_min(1e-12)
        y = (y - mean) / std
        if c.noise:
            y = y + c.noise * torch.randn(y.shape, generator=g, dtype=torch.float64)
        x, y = x.float(), y.float()
        return {"train": (x[: c.n_train], y[: c.n_train]), "val": (x[c.n_train :], y[c.n_train :])}
