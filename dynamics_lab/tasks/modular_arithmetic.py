"""(a op b) mod p over all pairs, split train/val by a seeded permutation (Power et al. 2022)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from dynamics_lab.registry import TASKS
from dynamics_lab.schema import NamedSection, Seed
from dynamics_lab.tasks.base import Batch, TaskSpec, TensorTask

# Miller-Rabin with the first 13 primes as bases is exact for every n < 3.3e24 (Sorenson and
# Webster 2015), which covers 64 bits; above that it is a strong probable-prime test.
WITNESSES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)


def is_prime(n: int) -> bool:
    """Whether `n` is prime, in microseconds for any 64-bit n (trial division would take hours)."""
    if n < 2:
        return False
    for q in WITNESSES:
        if n % q == 0:
            return n == q
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in WITNESSES:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def train_size(fraction: float, n: int) -> int:
    return int(round(fraction * n))


class ModularArithmeticConfig(NamedSection):
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

    def n_pairs(self) -> int:
        return self.config.p * (self.config.p - 1 if self.config.op == "div" else self.config.p)

    def train_examples(self) -> int:
        return train_size(self.config.train_fraction, self.n_pairs())

    def data_bytes(self) -> int:
        """Peak bytes `build` holds (int64): the p x p grid, the labels, the permutation and
        the split copies, about eight values per pair."""
        return 8 * 8 * self.config.p ** 2

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
