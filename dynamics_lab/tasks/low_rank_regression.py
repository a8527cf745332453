"""Linear teacher W* = U S V^T on white inputs: the task of stepwise (saddle-to-saddle) learning.

With train inputs made exactly white (X^T X / n = I) and the squared loss 0.5 ||f - y||^2, the
training loss of a linear student W is 0.5 ||W - W*||_F^2 (plus the noise term), so each teacher
mode (u_i, s_i, v_i) is an independent target of strength s_i (Saxe et al. 2014). The task exposes
the teacher as `U` (out x r), `S` (r,) and `V` (in x r) so measurements can project onto modes.
"""

from __future__ import annotations

import torch
from pydantic import Field, PositiveFloat, model_validator

from dynamics_lab.offers import TEACHER
from dynamics_lab.registry import TASKS
from dynamics_lab.schema import NamedSection, Seed
from dynamics_lab.tasks.base import Batch, TaskSpec, TensorTask


class LowRankRegressionConfig(NamedSection):
    in_dim: int = Field(8, ge=1)
    out_dim: int = Field(8, ge=1)
    singular_values: list[PositiveFloat] = Field(default_factory=lambda: [3.0, 1.0, 0.3],
                                                 min_length=1)
    n_train: int = Field(256, ge=1)
    n_val: int = Field(256, ge=1)
    whiten: bool = True  # train inputs exactly white; else iid N(0, I) (white on average)
    noise: float = Field(0.0, ge=0)  # std of Gaussian label noise
    seed: Seed = 0  # teacher and data; independent of the model-init seed

    @model_validator(mode="after")
    def _fits(self):
        rank = len(self.singular_values)
        if rank > min(self.in_dim, self.out_dim):
            raise ValueError(f"{rank} singular values need in_dim and out_dim >= {rank}")
        if self.whiten and self.n_train < self.in_dim:
            raise ValueError(f"whiten needs n_train >= in_dim ({self.n_train} < {self.in_dim})")
        return self


def orthonormal_columns(rows: int, cols: int, generator: torch.Generator) -> torch.Tensor:
    """A random rows x cols matrix with orthonormal columns (QR of a Gaussian, signs fixed)."""
    q, r = torch.linalg.qr(torch.randn(rows, cols, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))  # Haar-distributed, and the same on every platform


@TASKS.register("low_rank_regression")
class LowRankRegression(TensorTask):
    """y = W* x + noise with W* = U diag(S) V^T; `teacher` gives (U, S, V) in float64."""

    Config = LowRankRegressionConfig
    offers = TensorTask.offers | {TEACHER}

    def __init__(self, config: LowRankRegressionConfig, **kwargs):
        super().__init__(config, **kwargs)
        generator = torch.Generator().manual_seed(config.seed)
        rank = len(config.singular_values)
        self.U = orthonormal_columns(config.out_dim, rank, generator)
        self.V = orthonormal_columns(config.in_dim, rank, generator)
        self.S = torch.tensor(config.singular_values, dtype=torch.float64)
        self._data_seed = int(torch.randint(2**31 - 1, (1,), generator=generator))

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(input_shape=(self.config.in_dim,), n_outputs=self.config.out_dim,
                        loss="squared")

    @property
    def teacher(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(U, S, V): output directions, strengths (as given, not sorted), input directions."""
        return self.U, self.S, self.V

    @property
    def teacher_map(self) -> torch.Tensor:
        """W* = U diag(S) V^T, out_dim x in_dim."""
        return self.U @ torch.diag(self.S) @ self.V.T

    def build(self) -> dict[str, Batch]:
        c = self.config
        generator = torch.Generator().manual_seed(self._data_seed)
        x_train = torch.randn(c.n_train, c.in_dim, generator=generator, dtype=torch.float64)
        if c.whiten:
            q, r = torch.linalg.qr(x_train)
            x_train = (q * torch.sign(torch.diagonal(r))) * c.n_train ** 0.5
        x_val = torch.randn(c.n_val, c.in_dim, generator=generator, dtype=torch.float64)
        splits = {}
        for split, x in (("train", x_train), ("val", x_val)):
            y = x @ self.teacher_map.T
            if c.noise > 0:
                y = y + c.noise * torch.randn(y.shape, generator=generator, dtype=torch.float64)
            splits[split] = (x.float(), y.float())
        return splits
