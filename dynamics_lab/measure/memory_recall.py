"""Population error and recall by token-frequency bucket of an associative memory.

`memory/population_error` is sum_x p(x) 1[argmax logits(x) != f(x)] over every token, the error
the scaling laws are about; `memory/recall_{lo}-{hi}` is the fraction of tokens of frequency rank
lo..hi (1-based, log-spaced buckets) recalled correctly. With `estimators`, the closed-form
outer-product memories of models/memory.py are built from the same samples (and the model's own
embeddings) and scored too, as `memory/population_error_{scheme}`; they do not change during
training, so they are computed once and repeated at every measurement. `draws` > 1 averages the
closed-form errors over further independent embedding draws of the same sizes, which smooths the
sweep's power-law fits. The datamodule must provide `population()` -> (tokens, f, p) and, for the
estimators, `counts()` (tasks/associative_memory.py).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from pydantic import Field
from torch import nn
from typing_extensions import override

from dynamics_lab.measure.base import Measurement, MeasurementConfig
from dynamics_lab.metric_names import Memory
from dynamics_lab.models.memory import (
    Scheme,
    memory_predictions,
    outer_product_memory,
    random_embeddings,
    storage_weights,
)
from dynamics_lab.offers import COUNTS, POPULATION
from dynamics_lab.registry import MEASUREMENTS


class MemoryRecallConfig(MeasurementConfig):
    n_buckets: int = Field(6, ge=1)  # log-spaced frequency-rank buckets
    estimators: list[Scheme] = Field(default_factory=list)  # closed-form memories to score too
    capacity: float = Field(1.0, gt=0)  # top_k stores ceil(capacity * d) tokens
    draws: int = Field(1, ge=1)  # embedding draws the closed-form errors are averaged over
    chunk: int = Field(8192, ge=1)  # tokens per forward pass


def rank_buckets(n_tokens: int, n_buckets: int) -> list[tuple[int, int]]:
    """Log-spaced, non-empty (lo, hi) ranges of 1-based ranks covering 1..n_tokens."""
    edges = sorted({round((n_tokens + 1) ** (j / n_buckets)) for j in range(n_buckets + 1)})
    edges[0], edges[-1] = 1, n_tokens + 1
    return [(lo, hi - 1) for lo, hi in zip(edges, edges[1:]) if hi > lo]


def population_error(wrong: torch.Tensor, p: torch.Tensor) -> float:
    return float((p.double() * wrong.double()).sum())


@MEASUREMENTS.register("memory_recall")
class MemoryRecall(Measurement):
    """Logs `memory/population_error`, `memory/recall_{lo}-{hi}` and the closed-form errors."""

    Config = MemoryRecallConfig
    prefix = Memory.PREFIX
    uses_probe = False  # it scores every token of the population
    config: MemoryRecallConfig

    def __init__(self, config: MemoryRecallConfig | None = None, /, **kwargs: Any):
        super().__init__(config, **kwargs)
        self._closed_form: dict[str, float] | None = None

    @override
    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule,
                model: nn.Module) -> dict[str, float]:
        datamodule = getattr(trainer, "datamodule", None)
        x, targets, p = datamodule.population()
        device = next(model.parameters()).device
        with torch.no_grad():
            preds = torch.cat([model(x[i:i + self.config.chunk].to(device)).argmax(dim=-1).cpu()
                               for i in range(0, len(x), self.config.chunk)])
        wrong = preds != targets
        metrics = {Memory.POPULATION_ERROR: population_error(wrong, p)}
        by_rank = wrong[torch.sort(-p, stable=True).indices]
        for lo, hi in rank_buckets(len(p), self.config.n_buckets):
            metrics[Memory.recall(lo, hi)] = 1.0 - float(by_rank[lo - 1:hi].double().mean())
        if self.config.estimators:
            if self._closed_form is None:
                self._closed_form = self.closed_form(datamodule, model, targets, p)
            metrics.update(self._closed_form)
        return metrics

    @override
    def task_needs(self) -> tuple[str, ...]:
        return (POPULATION, COUNTS) if self.config.estimators else (POPULATION,)

    def closed_form(self, datamodule, model: nn.Module, targets: torch.Tensor,
                    p: torch.Tensor) -> dict[str, float]:
        """Mean population error of each closed-form memory over `draws` embedding draws."""
        inputs = getattr(model, "input_embeddings", None)
        outputs = getattr(model, "output_embeddings", None)
        if inputs is None or outputs is None:
            raise ValueError("closed-form estimators need a model with input_embeddings and "
                             "output_embeddings (models/memory.py)")
        counts = datamodule.counts()
        draws = [(inputs.detach().float().cpu(), outputs.detach().float().cpu())]
        for i in range(1, self.config.draws):
            generator = torch.Generator().manual_seed(self.config.probe_seed + i)
            draws.append((random_embeddings(len(inputs), inputs.shape[1], generator),
                          random_embeddings(len(outputs), outputs.shape[1], generator)))
        errors = {}
        chunk = self.config.chunk
        for scheme in self.config.estimators:
            q = storage_weights(counts, scheme, inputs.shape[1], self.config.capacity)
            total = 0.0
            for e, u in draws:
                W = outer_product_memory(e, u, targets, q)
                total += population_error(memory_predictions(W, e, u, chunk) != targets, p)
            errors[Memory.population_error_of(scheme)] = total / len(draws)
        return errors

