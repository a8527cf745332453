"""Polynomial regression on Gaussian inputs: the lazy-vs-rich grokking testbed (Kumar et al. 2023).

x ~ N(0, I/D) in dimension D (||x|| ~ 1); hidden directions have norm sqrt(D), so each
z_j = beta_j . x is exactly N(0, 1) and targets have O(1) scale whatever D is. With
`normalized_inputs: false`, x ~ N(0, I) (unit-variance coordinates, the scale that ntk and
mean-field layers, w.x / sqrt(D), expect) and the directions have unit norm: z_j is N(0, 1) still.

- quadratic_single_index: y = (beta . x)^2 / 2. A kernel needs ~D^2 samples to learn it; a
  network that finds beta needs ~D, so n_train between the two separates lazy from rich.
- hierarchical: y = g(p(x)) (Nichani, Damian & Lee 2023) with p(x) = sum_j He2(z_j) / sqrt(2 r)
  over r = `rank` orthogonal directions (zero mean, unit variance) and g(t) = t + (t^2 - 1) / 2.

Gaussian label noise of std `noise` is added to the training targets only, so val/loss measures
the distance to the true function.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from dynamics_lab.registry import TASKS
from dynamics_lab.schema import NamedSection, Seed
from dynamics_lab.tasks.base import Batch, TaskSpec, TensorTask


class PolynomialConfig(NamedSection):
    dim: int = Field(32, ge=1)  # D
    target: Literal["quadratic_single_index", "hierarchical"] = "quadratic_single_index"
    rank: int = Field(2, ge=1)  # directions in p(x) of the hierarchical target
    noise: float = Field(0.0, ge=0)  # std of the label noise on training targets
    normalized_inputs: bool = True  # x ~ N(0, I/D); false: x ~ N(0, I)
    n_train: int = Field(256, ge=1)
    n_test: int = Field(2048, ge=1)
    seed: Seed = 0  # the directions and the samples; independent of the model-init seed


@TASKS.register("polynomial")
class Polynomial(TensorTask):
    """Gaussian inputs, a polynomial target of a few hidden directions, squared loss."""

    Config = PolynomialConfig

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(input_shape=(self.config.dim,), n_outputs=1, loss="squared")

    def directions(self) -> torch.Tensor:
        """The hidden directions as rows (r x D), orthogonal, each of norm sqrt(D)."""
        c = self.config
        r = 1 if c.target == "quadratic_single_index" else c.rank
        if r > c.dim:
            raise ValueError(f"task.rank={r} exceeds task.dim={c.dim}")
        g = torch.Generator().manual_seed(c.seed)
        q, _ = torch.linalg.qr(torch.randn(c.dim, r, generator=g, dtype=torch.float64))
        return q.T * (c.dim**0.5 if c.normalized_inputs else 1.0)

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """The noiseless target of inputs x (n x D) as an (n, 1) tensor."""
        z = x.double() @ self.directions().T
        if self.config.target == "quadratic_single_index":
            y = z[:, 0] ** 2 / 2
        else:
            p = ((z**2 - 1) / 2**0.5).sum(1) / z.shape[1] ** 0.5
            y = p + (p**2 - 1) / 2
        return y.unsqueeze(1).float()

    def build(self) -> dict[str, Batch]:
        c = self.config
        # Offset from the direction stream so samples and directions are independent draws.
        g = torch.Generator().manual_seed(c.seed + 1_000_003)
        scale = c.dim**-0.5 if c.normalized_inputs else 1.0
        x_train = torch.randn(c.n_train, c.dim, generator=g) * scale
        x_test = torch.randn(c.n_test, c.dim, generator=g) * scale
        y_train = self.target(x_train)
        if c.noise > 0:
            y_train = y_train + c.noise * torch.randn(y_train.shape, generator=g)
        return {"train": (x_train, y_train), "val": (x_test, self.target(x_test))}
