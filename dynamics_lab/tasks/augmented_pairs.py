"""Positive pairs of augmented views with a known cross-correlation spectrum: the data of the
linear model of self-supervised learning (Simon et al. 2023).

A clean input is z = V diag(sqrt(spectrum)) g (g white, V orthonormal, m x k); its two views are
x = z + noise * e and x' = z + noise * e' with independent e, e'. The views' cross-correlation
Gamma = E[x x'^T + x' x^T] / 2 is then V diag(spectrum) V^T: augmentation noise makes each view
wider but is shared by neither. With `exact`, the training split's g, e and e' are built from
orthonormal columns (n_train >= 3 dim), so its empirical Gamma is exactly that matrix and the
loss landscape is the one the theory is written in; the held-out split is drawn iid.

A batch is (x, y) with x of shape (n, 2, dim), the two views of each example side by side, and
y an empty (n, 0) tensor: the objective (`barlow_twins` in losses.py) has no target. The
encoder sees one view at a time, so the spec's input_shape is that of a view and n_outputs is
the embedding dimension `embed_dim`. `modes` gives (spectrum, V) for measurements.
"""

from __future__ import annotations

import torch
from pydantic import Field, PositiveFloat, model_validator

from dynamics_lab.offers import MODES
from dynamics_lab.registry import TASKS
from dynamics_lab.schema import NamedSection, Seed
from dynamics_lab.tasks.base import Batch, TaskSpec, TensorTask
from dynamics_lab.tasks.low_rank_regression import orthonormal_columns


class AugmentedPairsConfig(NamedSection):
    dim: int = Field(16, ge=1)  # input dimension m of each view
    spectrum: list[PositiveFloat] = Field(  # eigenvalues of Gamma, in the order given
        default_factory=lambda: [1.0, 0.5, 0.25, 0.125], min_length=1)
    embed_dim: int = Field(4, ge=1)  # the encoder's output dimension d
    noise: float = Field(0.5, ge=0)  # std of each view's own augmentation noise
    n_train: int = Field(256, ge=2)
    n_val: int = Field(256, ge=2)
    exact: bool = True  # the training split's Gamma is exactly V diag(spectrum) V^T
    seed: Seed = 0

    @model_validator(mode="after")
    def _fits(self):
        if len(self.spectrum) > self.dim:
            raise ValueError(f"{len(self.spectrum)} eigenvalues need dim >= {len(self.spectrum)}")
        if self.exact and self.n_train < 3 * self.dim:
            raise ValueError(f"exact needs n_train >= 3 dim ({self.n_train} < {3 * self.dim})")
        return self


@TASKS.register("augmented_pairs")
class AugmentedPairs(TensorTask):
    """Two views per example; the cross-correlation of the views has eigenvalues `spectrum`."""

    Config = AugmentedPairsConfig
    offers = TensorTask.offers | {MODES}

    def __init__(self, config: AugmentedPairsConfig, **kwargs):
        super().__init__(config, **kwargs)
        generator = torch.Generator().manual_seed(config.seed)
        self.V = orthonormal_columns(config.dim, len(config.spectrum), generator)
        self.gamma = torch.tensor(config.spectrum, dtype=torch.float64)
        self._data_seed = int(torch.randint(2**31 - 1, (1,), generator=generator))

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(input_shape=(self.config.dim,), n_outputs=self.config.embed_dim,
                        loss="barlow_twins")

    @property
    def modes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(eigenvalues, eigenvectors m x k) of the views' cross-correlation Gamma, float64."""
        return self.gamma, self.V

    @property
    def cross_correlation(self) -> torch.Tensor:
        """Gamma = V diag(spectrum) V^T, m x m."""
        return self.V @ torch.diag(self.gamma) @ self.V.T

    def _pairs(self, n: int, exact: bool, generator: torch.Generator) -> torch.Tensor:
        c, k = self.config, len(self.config.spectrum)
        if exact:  # g, e, e' with orthonormal columns side by side, scaled to unit variance
            q = orthonormal_columns(n, k + 2 * c.dim, generator) * n**0.5
            g, e, e2 = q[:, :k], q[:, k : k + c.dim], q[:, k + c.dim :]
        else:
            g, e, e2 = (torch.randn(n, w, generator=generator, dtype=torch.float64)
                        for w in (k, c.dim, c.dim))
        z = (g * self.gamma.sqrt()) @ self.V.T
        return torch.stack([z + c.noise * e, z + c.noise * e2], dim=1)

    def build(self) -> dict[str, Batch]:
        c = self.config
        generator = torch.Generator().manual_seed(self._data_seed)
        splits = {}
        for split, n, exact in (("train", c.n_train, c.exact), ("val", c.n_val, False)):
            x = self._pairs(n, exact, generator).float()
            splits[split] = (x, torch.zeros(n, 0))
        return splits
