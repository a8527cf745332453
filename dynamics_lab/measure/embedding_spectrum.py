"""EmbeddingSpectrum: the spectrum of a self-supervised embedding and how much of it each
eigenmode of the views' cross-correlation carries (Simon et al. 2023, Fig. 1B).

On the probe set of pairs (x: n x 2 x m), the embeddings z = f(x) give the symmetrised
cross-correlation C = (Z1^T Z2 + Z2^T Z1) / 2n (d x d), the matrix the Barlow Twins loss pulls to
the identity. Logged at each scheduled step:
  embedding/eig_i        eigenvalues of C, descending (each steps from ~0 to 1 as a mode is learned)
  modes/strength_j       gamma_j |f(v_j) - f(0)|^2 for the cross-correlation's eigenmodes
                         (gamma_j, v_j), strongest first, for the min(d, k) modes an embedding of
                         d dims can learn. For a linear encoder this is the part of tr C that mode
                         j carries (sum over all modes = tr C on an exact split), 1 once learned.
The modes come from the datamodule's `modes` (tasks/augmented_pairs.py) or the `modes=` argument;
without them only the eigenvalues are logged.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from pydantic import Field
from torch import nn
from typing_extensions import override

from dynamics_lab.measure.base import Measurement, MeasurementConfig
from dynamics_lab.metric_names import Embedding
from dynamics_lab.metric_names import Modes as ModeNames
from dynamics_lab.offers import MODES, offered
from dynamics_lab.registry import MEASUREMENTS

Modes = tuple[torch.Tensor, torch.Tensor]  # (eigenvalues (k,), eigenvectors m x k)


class EmbeddingSpectrumConfig(MeasurementConfig):
    n_modes: int | None = Field(None, ge=1)  # modes logged; None: all an embedding can learn


def cross_correlation(z: torch.Tensor) -> torch.Tensor:
    """(Z1^T Z2 + Z2^T Z1) / 2n of embeddings z (n x 2 x d)."""
    cross = z[:, 0].T @ z[:, 1] / z.shape[0]
    return (cross + cross.T) / 2


def mode_strengths(model: nn.Module, gamma: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """gamma_j |f(v_j) - f(0)|^2 for each column v_j of V (m x k)."""
    ref = next(model.parameters())
    directions = torch.cat([V.T, torch.zeros(1, V.shape[0], dtype=V.dtype)]).to(ref)
    out = model(directions).double()
    return gamma.to(out) * (out[:-1] - out[-1]).pow(2).sum(dim=1)


@MEASUREMENTS.register("embedding_spectrum")
class EmbeddingSpectrum(Measurement):
    """Logs `embedding/eig_i` and, when the modes are known, `modes/strength_j`."""

    Config = EmbeddingSpectrumConfig
    prefix = Embedding.PREFIX
    config: EmbeddingSpectrumConfig

    def __init__(self, config: EmbeddingSpectrumConfig | None = None, /, *,
                 modes: Modes | None = None, **kwargs: Any):
        super().__init__(config, **kwargs)
        self.modes = modes

    def modes_of(self, trainer: L.Trainer) -> Modes | None:
        if self.modes is not None:
            return self.modes
        return offered(getattr(trainer, "datamodule", None), MODES)

    @override
    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule,
                model: nn.Module) -> dict[str, float]:
        x, _ = self.probe
        if x.dim() < 3 or x.shape[1] != 2:
            raise ValueError(f"needs pairs of views (n x 2 x ...), got a batch of {tuple(x.shape)}")
        with torch.no_grad():
            z = model(x).double()
            eigs = torch.linalg.eigvalsh(cross_correlation(z.reshape(len(x), 2, -1)))
            metrics = {Embedding.eigenvalue(i): v for i, v in enumerate(eigs.flip(0).tolist())}
            modes = self.modes_of(trainer)
            if modes is not None:
                gamma, V = modes
                n = self.config.n_modes or min(len(eigs), len(gamma))
                order = torch.argsort(gamma, descending=True)[:n]
                strengths = mode_strengths(model, gamma[order], V[:, order])
                metrics.update({ModeNames.strength(j): v
                                for j, v in enumerate(strengths.tolist())})
        return metrics
