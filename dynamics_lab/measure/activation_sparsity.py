"""ActivationSparsity: how many ReLUs fire, per input and ever, on the probe set (Andriushchenko
et al. 2023: SGD with large step sizes learns sparse features).

For each hidden ReLU layer (a ReLU following a Linear in an nn.Sequential, as measure/features.py
finds them), with A the probe's post-activations (inputs x units):
  sparsity/active_fraction/<layer>           mean over inputs of the fraction of units with
                                             output > 0 (the paper's feature sparsity
                                             coefficient)
  sparsity/dead_fraction/<layer>             fraction of units active on no probe input
  sparsity/distinct_active_fraction/<layer>  as active_fraction, counting only distinct units:
                                             a unit whose activations correlate above
                                             `duplicate_threshold` (in absolute value) with a
                                             later unit's is a copy and dropped, the paper's
                                             de-duplicated coefficient
and the same three without a layer suffix for all hidden units pooled (each layer's copies are
found within that layer).
"""

from __future__ import annotations

import lightning as L
import torch
from pydantic import Field
from torch import nn
from typing_extensions import override

from dynamics_lab.measure.base import Measurement, MeasurementConfig
from dynamics_lab.measure.features import hidden_layers, representations
from dynamics_lab.metric_names import Sparsity
from dynamics_lab.registry import MEASUREMENTS

KINDS = ("active_fraction", "dead_fraction", "distinct_active_fraction")


class ActivationSparsityConfig(MeasurementConfig):
    duplicate_threshold: float = Field(0.95, gt=0, le=1)  # |corr| above this: a copy


def distinct_units(acts: torch.Tensor, threshold: float) -> torch.Tensor:
    """Mask of the units kept: active at least once, and not correlated above `threshold` with a
    later kept unit (so each group of copies keeps its last member)."""
    alive = (acts > 0).any(dim=0)
    keep = torch.zeros(acts.shape[1], dtype=torch.bool, device=acts.device)
    index = alive.nonzero().flatten()
    if len(index) < 2:
        keep[index] = True
        return keep
    centered = acts[:, index].double() - acts[:, index].double().mean(0)
    norms = centered.norm(dim=0)
    corr = (centered.T @ centered) / (norms[:, None] * norms[None, :])
    copies = (corr.abs() > threshold).nan_to_num(False).triu(diagonal=1).any(dim=1)
    keep[index[~copies]] = True
    return keep


def counts(acts: torch.Tensor, threshold: float) -> torch.Tensor:
    """(active entries, dead units, distinct active entries, entries, units) of one layer's
    post-activations (inputs x units), as float64 so layers add up."""
    on = acts > 0
    kept = distinct_units(acts, threshold)
    return torch.tensor([on.sum(), (~on.any(dim=0)).sum(), on[:, kept].sum(), on.numel(),
                         on.shape[1]], dtype=torch.float64)


def fractions(c: torch.Tensor) -> dict[str, float]:
    """active_fraction, dead_fraction and distinct_active_fraction from `counts`."""
    return dict(zip(KINDS, (float(c[0] / c[3]), float(c[1] / c[4]), float(c[2] / c[3]))))


@MEASUREMENTS.register("activation_sparsity")
class ActivationSparsity(Measurement):
    """Logs the active, dead and distinct-active fractions of every hidden ReLU layer."""

    Config = ActivationSparsityConfig
    prefix = Sparsity.PREFIX
    config: ActivationSparsityConfig

    @override
    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule,
                model: nn.Module) -> dict[str, float]:
        relus = [name for name, m in hidden_layers(model).items() if isinstance(m, nn.ReLU)]
        if not relus:
            raise ValueError(f"{type(model).__name__} has no hidden ReLU layer after a Linear")
        model.eval()
        acts = {name: rep for name, rep in representations(model, self.probe[0]).items()
                if name in relus}
        threshold = self.config.duplicate_threshold
        metrics: dict[str, float] = {}
        total = torch.zeros(5, dtype=torch.float64)
        for name, rep in acts.items():
            layer = counts(rep, threshold)
            total += layer
            metrics.update({Sparsity.of(k, name): v for k, v in fractions(layer).items()})
        metrics.update({Sparsity.of(k): v for k, v in fractions(total).items()})
        return metrics
