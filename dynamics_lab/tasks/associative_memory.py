"""Zipf-distributed tokens and a fixed random map to classes: the associative-memory task.

Tokens x in {0, ..., N-1} are drawn with p(x) proportional to (x + 1)^-alpha (token id = rank - 1)
and labelled y = f(x), a random function into M classes fixed by the seed (Cabannes, Dohmatob,
Bietti 2023). The train split is T iid samples (a fixed sample set). The val split is every token
once, so the trainer's `val/acc` is the token-uniform accuracy; the population error
sum_x p(x) 1[wrong at x] is logged by the `memory_recall` measurement from `population()`.
"""

from __future__ import annotations

import torch
from pydantic import Field

from dynamics_lab.offers import COUNTS, POPULATION
from dynamics_lab.registry import TASKS
from dynamics_lab.schema import NamedSection, Seed
from dynamics_lab.tasks.base import Batch, TaskSpec, TensorTask


class AssociativeMemoryTaskConfig(NamedSection):
    n_tokens: int = Field(4096, ge=2)  # N
    n_classes: int = Field(64, ge=2)  # M
    alpha: float = Field(2.0, gt=0)  # Zipf exponent; the scaling laws need alpha > 1
    n_samples: int = Field(4096, ge=1)  # T
    seed: Seed = 0  # the map f and the samples; independent of the model-init seed


def zipf_probabilities(n_tokens: int, alpha: float) -> torch.Tensor:
    """p(x) proportional to (x + 1)^-alpha for x = 0..n_tokens-1, float64, summing to 1."""
    weights = torch.arange(1, n_tokens + 1, dtype=torch.float64).pow(-alpha)
    return weights / weights.sum()


@TASKS.register("associative_memory")
class AssociativeMemoryTask(TensorTask):
    """Inputs are single tokens, shape (n, 1); labels are their classes f(x)."""

    Config = AssociativeMemoryTaskConfig
    offers = TensorTask.offers | {COUNTS, POPULATION}

    def __init__(self, config: AssociativeMemoryTaskConfig, **kwargs):
        super().__init__(config, **kwargs)
        generator = torch.Generator().manual_seed(config.seed)
        self.probabilities = zipf_probabilities(config.n_tokens, config.alpha)
        self.targets = torch.randint(config.n_classes, (config.n_tokens,), generator=generator)
        self._sample_seed = int(torch.randint(2**31 - 1, (1,), generator=generator))

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(input_shape=(1,), n_outputs=self.config.n_classes, loss="cross_entropy",
                        n_tokens=self.config.n_tokens)

    def samples(self) -> torch.Tensor:
        """The T sampled tokens, shape (T,), deterministic in the task seed."""
        generator = torch.Generator().manual_seed(self._sample_seed)
        return torch.multinomial(self.probabilities, self.config.n_samples, replacement=True,
                                 generator=generator)

    def counts(self) -> torch.Tensor:
        """How often each token occurs in the train split, float64 of shape (N,)."""
        self.setup()
        x = self.splits["train"][0].reshape(-1).cpu()
        return torch.bincount(x, minlength=self.config.n_tokens).double()

    def population(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every token (N, 1), its class f(x) and its probability p(x): the population to score."""
        x = torch.arange(self.config.n_tokens).unsqueeze(1)
        return x, self.targets.clone(), self.probabilities.clone()

    def build(self) -> dict[str, Batch]:
        x = self.samples()
        tokens = torch.arange(self.config.n_tokens)
        return {"train": (x.unsqueeze(1), self.targets[x]),
                "val": (tokens.unsqueeze(1), self.targets.clone())}
