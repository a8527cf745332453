"""(a op b) mod p over all pairs, split train/val by a seeded permutation (Power et al. 2022)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from dynamics_lab.registry import TASKS
from dynamics_lab.schema import NamedSection, Seed
from dynamics_lab.tasks.base import Batch, TaskSpec, TensorTask


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))


def train_size(fraction: float, n: int) -> int:
    return int(round(fraction * n))


class ModularArithmeticConfig(NamedSection):
    name: Literal["modular_arithmetic"] = "modular_arithmetic"
    p: int = Field(97, ge=2)
    op: Literal["add", "sub", "mul", "div"] = "add"
    train_fraction: float = Field(0.4, gt=0, lt=1)
    seed: Seed = 0  # the data split; independent of the model-init seed

    @model_validator(mode="after")
    def _valid_table_and_split(self):
        if self.op == "div" and not is_prime(self.p):
            raise ValueError(f"op=div needs a prime p, got p={self.p}")
        n = self.p * (self.p - 1 if self.op == "div" else self.p)
        if not 0 < train_size(self.train_fraction, n) < n:
            raise ValueError(f"train_fraction={self.train_fraction} of {n} pairs leaves an "
                             "empty split")
        return self


@TASKS.register("modular_arithmetic")
class ModularArithmetic(TensorTask):
    """Inputs are token pairs (a, b); the label is (a op b) mod p; division skips b = 0."""

    Config = ModularArithmeticConfig

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(input_shape=(2,), n_outputs=self.config.p, loss="cross_entropy",
                        n_tokens=self.config.p)

    def table(self) -> Batch:
        """Every valid pair and its label."""
        p, op = self.config.p, self.config.op
        a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
        a, b = a.flatten(), b.flatten()
        if op == "div":
            keep = b != 0
            a, b = a[keep], b[keep]
            # Fermat: b^(p-2) is b's inverse mod p.
            inverse = torch.tensor([pow(int(v), p - 2, p) for v in range(p)])
            labels = (a * inverse[b]) % p
        else:
            labels = {"add": a + b, "sub": a - b, "mul": a * b}[op] % p
        return torch.stack([a, b], dim=1), labels

    def build(self) -> dict[str, Batch]:
        x, y = self.table()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.config.seed))
        n_train = train_size(self.config.train_fraction, len(x))
        train, val = order[:n_train], order[n_train:]
        return {"train": (x[train], y[train]), "val": (x[val], y[val])}
