"""Regression on a small random ReLU teacher network: the teacher-student setting in which SGD with
large step sizes learns sparse features (Andriushchenko et al. 2023).

Inputs are N(0, I_dim), projected onto the unit sphere with `sphere` (the paper's x / |x|). The
teacher is a fully connected ReLU network with hidden widths `teacher_widths` and one output,
weights N(0, 1) and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's default), so only a
few features are needed to fit it exactly. Targets are the teacher's raw outputs, plus optional
Gaussian noise. Everything is drawn from one generator seeded by `seed`.
"""

from __future__ import annotations

import torch
from pydantic import Field, PositiveInt

from dynamics_lab.registry import TASKS
from dynamics_lab.schema import NamedSection, Seed
from dynamics_lab.tasks.base import Batch, TaskSpec, TensorTask


class ReluTeacherConfig(NamedSection):
    dim: int = Field(5, ge=1)
    teacher_widths: list[PositiveInt] = Field(default_factory=lambda: [2, 2], min_length=1)
    n_train: int = Field(50, ge=1)
    n_val: int = Field(1000, ge=1)
    sphere: bool = True  # inputs on the unit sphere
    noise: float = Field(0.0, ge=0)  # std of Gaussian label noise
    seed: Seed = 0  # data and teacher; independent of the model-init seed


def relu_teacher(x: torch.Tensor, widths: list[int], generator: torch.Generator) -> torch.Tensor:
    """The outputs (n x 1) of a random ReLU network with the given hidden widths on x."""

    def layer(h: torch.Tensor, width: int) -> torch.Tensor:
        fan_in = h.shape[1]
        w = torch.randn(width, fan_in, generator=generator, dtype=x.dtype)
        b = (2 * torch.rand(width, generator=generator, dtype=x.dtype) - 1) / fan_in**0.5
        return h @ w.T + b

    h = x
    for width in widths:
        h = torch.relu(layer(h, width))
    return layer(h, 1)


@TASKS.register("relu_teacher")
class ReluTeacher(TensorTask):
    """Inputs on the sphere (or Gaussian), targets from a small random ReLU teacher."""

    Config = ReluTeacherConfig

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(input_shape=(self.config.dim,), n_outputs=1, loss="squared")

    def build(self) -> dict[str, Batch]:
        c = self.config
        g = torch.Generator().manual_seed(c.seed)
        x = torch.randn(c.n_train + c.n_val, c.dim, generator=g, dtype=torch.float64)
        if c.sphere:
            x = x / x.norm(dim=1, keepdim=True)
        y = relu_teacher(x, list(c.teacher_widths), g)
        if c.noise:
            y = y + c.noise * torch.randn(y.shape, generator=g, dtype=torch.float64)
        x, y = x.float(), y.float()
        return {"train": (x[: c.n_train], y[: c.n_train]), "val": (x[c.n_train :], y[c.n_train :])}
