"""Sparse parity on the Boolean hypercube (Barak et al. 2022); k = 2 is XOR (Glasgow 2023).

x is uniform on {-1, +1}^n and y = sign * prod_{i in S} x_i for a hidden set S of k coordinates
chosen by `seed` (exposed as `relevant`). `sign: -1` gives the y = -x_i x_j XOR of "SGD finds
then tunes features". Labels are +-1 for the logistic or hinge loss.

Online mode (the default, as in Barak et al.): every training step draws a fresh minibatch from
its own seeded stream on the device, so no example is seen twice. The `n_train` fixed samples
then serve only as the reference set for train/* metrics and measurement probes. With
`online: false` training cycles over those n_train samples (fixed-sample SGD). The val split is
always n_test fresh samples, so val/* is the population loss. A resumed online run restarts its
stream: the samples are i.i.d., so only their identity changes, not their law.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
from pydantic import Field, model_validator

from dynamics_lab.offers import RELEVANT
from dynamics_lab.registry import TASKS
from dynamics_lab.schema import NamedSection, Seed
from dynamics_lab.tasks.base import Batch, TaskSpec, TensorTask


class ParityConfig(NamedSection):
    n: int = Field(30, ge=1)  # input dimension
    k: int = Field(3, ge=1)  # relevant coordinates
    sign: Literal[-1, 1] = 1
    loss: Literal["logistic", "hinge"] = "hinge"
    online: bool = True  # fresh samples every step
    n_train: int = Field(2048, ge=1)  # the fixed training sample (online: the reference set)
    n_test: int = Field(2048, ge=1)
    seed: Seed = 0  # the relevant set and the fixed samples; independent of the model-init seed

    @model_validator(mode="after")
    def _k_at_most_n(self):
        if self.k > self.n:
            raise ValueError(f"k={self.k} relevant coordinates need n >= k, got n={self.n}")
        return self


class FreshBatches:
    """Endless minibatches of new hypercube samples, drawn on the device from a seeded stream."""

    def __init__(self, task: Parity, batch_size: int, seed: int, device: torch.device):
        self.task, self.batch_size, self.device = task, batch_size, device
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def __iter__(self) -> Iterator[Batch]:
        while True:
            x = self.task.sample(self.batch_size, self.generator, self.device)
            yield x, self.task.label(x)


@TASKS.register("parity")
class Parity(TensorTask):
    """Inputs in {-1, +1}^n, label = sign * product of the k `relevant` coordinates."""

    Config = ParityConfig
    offers = TensorTask.offers | {RELEVANT}

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(input_shape=(self.config.n,), n_outputs=1, loss=self.config.loss)

    @property
    def relevant(self) -> list[int]:
        """The k hidden coordinates the label depends on, sorted."""
        g = torch.Generator().manual_seed(self.config.seed)
        return sorted(torch.randperm(self.config.n, generator=g)[: self.config.k].tolist())

    def sample(self, n: int, generator: torch.Generator,
               device: torch.device | None = None) -> torch.Tensor:
        bits = torch.randint(0, 2, (n, self.config.n), generator=generator, device=device)
        return (2 * bits - 1).float()

    def label(self, x: torch.Tensor) -> torch.Tensor:
        return self.config.sign * x[:, self.relevant].prod(dim=1)

    def build(self) -> dict[str, Batch]:
        g = torch.Generator().manual_seed(self.config.seed + 1_000_003)
        x_train = self.sample(self.config.n_train, g)
        x_test = self.sample(self.config.n_test, g)
        return {"train": (x_train, self.label(x_train)), "val": (x_test, self.label(x_test))}

    def train_dataloader(self):
        if not self.config.online:
            return super().train_dataloader()
        self.setup()
        stream_seed = hash((self.config.seed, self.seed)) % 2**62
        return FreshBatches(self, self.batch_size or self.config.n_train, stream_seed,
                            self._device())
