"""SignalAlignment: how far the first layer has turned toward the signal directions of a sparse
parity task (for XOR, y = +-x_i x_j: the directions e_i + e_j and e_i - e_j; Glasgow 2023).

For each hidden neuron j with input weights w_j (as applied) and readout a_j, its alignment is
max_u |cos(w_j, u)| over the signal directions u: the sign patterns (+-1 on the k relevant
coordinates, 0 elsewhere) / sqrt(k), up to a global sign (2^(k-1) of them). A random w_j scores
about 1/sqrt(d); a neuron that found a signal direction scores 1. Logged at each scheduled step:
  signal/alignment          mean over neurons weighted by |a_j| ||w_j|| (the neurons that carry
                            the output count; the plain mean when no readout is found)
  signal/alignment_mean     the unweighted mean
  signal/alignment_top10    mean over the top decile of neurons
  signal/subspace_fraction  weighted mean of ||P_S w_j|| / ||w_j||, P_S the projection on the span
                            of the relevant coordinates (1/sqrt(d / k) at random)
  signal/random_level       the unweighted mean alignment of isotropic random weights (Monte Carlo,
                            fixed seed): the level the search phase starts from
  signal/neuron_scale       mean |a_j| ||w_j||: small while SGD searches, growing as it tunes
The relevant coordinates are read off the datamodule (`relevant`, as the parity task exposes them),
or given as `relevant`. The first Linear is the input layer; the readout is the last Linear taking
its outputs (a depth-1 MLP's output layer).
"""

from __future__ import annotations

import itertools
from typing import Any

import lightning as L
import torch
from pydantic import Field
from torch import nn
from typing_extensions import override

from dynamics_lab.measure.base import Measurement, MeasurementConfig
from dynamics_lab.measure.features import first_linear
from dynamics_lab.metric_names import Signal
from dynamics_lab.offers import RELEVANT, offered
from dynamics_lab.registry import MEASUREMENTS


class SignalConfig(MeasurementConfig):
    relevant: list[int] | None = None  # the signal coordinates; None: the datamodule's `relevant`
    random_samples: int = Field(4096, ge=1)  # Monte Carlo draws for signal/random_level


def signal_directions(relevant: list[int], dim: int, dtype=torch.float64) -> torch.Tensor:
    """Unit signal directions as rows: the sign patterns on `relevant`, first sign fixed to +."""
    k = len(relevant)
    rows = []
    for signs in itertools.product((1.0, -1.0), repeat=k - 1):
        u = torch.zeros(dim, dtype=dtype)
        u[relevant] = torch.tensor((1.0, *signs), dtype=dtype) / k**0.5
        rows.append(u)
    return torch.stack(rows)


def neuron_alignment(W: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Per neuron (row of W), max over directions of |cos(w_j, u)| (0 for a zero row)."""
    W = W.detach().double()
    norms = W.norm(dim=1).clamp_min(torch.finfo(W.dtype).tiny)
    return ((W @ directions.to(W).T).abs().max(dim=1).values / norms)


def random_level(dim: int, directions: torch.Tensor, samples: int, seed: int = 0) -> float:
    """Mean alignment of isotropic Gaussian weights with the directions."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(samples, dim, generator=g, dtype=torch.float64)
    return float(neuron_alignment(W, directions).mean())


def readout_weights(model: nn.Module, width: int) -> torch.Tensor | None:
    """|a_j| per hidden neuron (summed over outputs): the last Linear taking `width` inputs, as
    applied (trained or not)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    readouts = [m for m in linears[1:] if m.in_features == width]
    if not readouts:
        return None  # a single layer: no readout
    last = readouts[-1]
    weight = last.weight * getattr(last, "weight_multiplier", 1.0)
    return weight.detach().double().abs().sum(dim=0)


@MEASUREMENTS.register("signal")
class SignalAlignment(Measurement):
    """First-layer alignment with the signal directions of a sparse parity.

    Example:
        >>> trainer = L.Trainer(callbacks=[SignalAlignment(log_spaced=True, per_decade=20)])
    """

    Config = SignalConfig
    prefix = Signal.PREFIX
    uses_probe = False
    config: SignalConfig

    def __init__(self, config: SignalConfig | None = None, /, **kwargs: Any):
        super().__init__(config, **kwargs)
        self._random: dict[tuple, float] = {}

    @override
    def task_needs(self) -> tuple[str, ...]:
        return () if self.config.relevant is not None else (RELEVANT,)

    def relevant(self, trainer: L.Trainer) -> list[int] | None:
        if self.config.relevant is not None:
            return list(self.config.relevant)
        found = offered(getattr(trainer, "datamodule", None), RELEVANT)
        return None if found is None else list(found)

    @override
    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule,
                model: nn.Module) -> dict[str, float]:
        relevant = self.relevant(trainer)
        W = first_linear(model)
        if not relevant or W is None or max(relevant) >= W.shape[1]:
            return {}
        return self.metrics(W, readout_weights(model, W.shape[0]), relevant)

    def metrics(self, W: torch.Tensor, readout: torch.Tensor | None,
                relevant: list[int]) -> dict[str, float]:
        """The signal/* metrics of input weights W (neurons x d) and readout sizes |a_j|."""
        W = W.detach().double()
        directions = signal_directions(relevant, W.shape[1])
        align = neuron_alignment(W, directions)
        norms = W.norm(dim=1)
        subspace = W[:, relevant].norm(dim=1) / norms.clamp_min(torch.finfo(W.dtype).tiny)
        scale = readout.to(W) * norms if readout is not None else torch.ones_like(norms)
        weights = scale / scale.sum() if float(scale.sum()) > 0 else torch.full_like(
            norms, 1 / len(norms))
        top = align.sort(descending=True).values[: max(1, len(align) // 10)]
        key = (tuple(relevant), W.shape[1])
        if key not in self._random:
            self._random[key] = random_level(W.shape[1], directions, self.config.random_samples)
        metrics = {
            Signal.ALIGNMENT: float((weights * align).sum()),
            Signal.ALIGNMENT_MEAN: float(align.mean()),
            Signal.ALIGNMENT_TOP10: float(top.mean()),
            Signal.SUBSPACE_FRACTION: float((weights * subspace).sum()),
            Signal.RANDOM_LEVEL: self._random[key],
        }
        if readout is not None:
            metrics[Signal.NEURON_SCALE] = float(scale.mean())
        return metrics
