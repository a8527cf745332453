"""Second-order regression model (Agarwala, Pedregosa, Pennington 2022): a model quadratic in its
parameters, f = f0 + J theta + theta^T Q theta / 2 per output, with J and Q fixed and random.

Inputs enter linearly through the features phi(x) = x / sqrt(dim): output o is
    f_o(x; theta) = sum_k phi_k(x) (J_ko . theta + theta^T Q_ko theta / 2),
so each example alpha has its own Jacobian J_alpha = sum_k phi_k(x_alpha) J_k and curvature
Q_alpha = sum_k phi_k(x_alpha) Q_k; with dim >= n_train they are generic, as in the paper's random
models. theta starts at 0 (f0 = 0: the residuals start at -y). Entries of J_k are N(0, 1/P) and
Q_k = curvature (A + A^T) / sqrt(2P) with A standard Gaussian, so ||Q_k|| ~ 2 curvature and the
NTK at init is O(1) for unit-variance inputs. J and Q are buffers drawn from the global RNG when
the model is built (a run's seed picks the random model); curvature 0 is the linear (NTK) model,
whose sharpness never moves.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from dynamics_lab.registry import MODELS
from dynamics_lab.schema import NamedSection
from dynamics_lab.tasks.base import TaskSpec


class QuadraticConfig(NamedSection):
    n_params: int = Field(40, ge=1)  # P, the length of theta
    curvature: float = Field(0.4, ge=0)  # epsilon: scale of the second-order term Q


@MODELS.register("quadratic")
class QuadraticModel(nn.Module):
    """f(x; theta) = phi(x) . (J theta + theta^T Q theta / 2), one (J, Q) per feature and output."""

    Config = QuadraticConfig

    def __init__(self, config: QuadraticConfig, spec: TaskSpec):
        super().__init__()
        if spec.n_tokens is not None:
            raise ValueError("quadratic needs vector inputs; this task gives tokens")
        self.config = config
        dim = int(torch.tensor(spec.input_shape).prod())
        p, k = config.n_params, spec.n_outputs
        self.theta = nn.Parameter(torch.zeros(p))
        self.register_buffer("jacobian", torch.randn(dim, k, p) / p**0.5)
        a = torch.randn(dim, k, p, p)
        self.register_buffer("hessians", config.curvature * (a + a.transpose(-1, -2))
                             / (2 * p) ** 0.5)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) / self.jacobian.shape[0] ** 0.5

    def coefficients(self) -> torch.Tensor:
        """J_k theta + theta^T Q_k theta / 2 for every feature k and output: (dim, outputs)."""
        theta = self.theta
        # Two matmuls rather than one einsum: ~4x faster, and torch.func batches them well.
        return self.jacobian @ theta + 0.5 * ((self.hessians @ theta) @ theta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x) @ self.coefficients()
