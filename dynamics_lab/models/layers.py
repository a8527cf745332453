"""Small shared pieces: activations by name, token input embedding, init scaling."""

from __future__ import annotations

import torch
from torch import nn


class Quadratic(nn.Module):
    """x -> x^2, the activation of the solvable grokking models (Gromov 2023)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


class LinearQuadratic(nn.Module):
    """z -> z + eps z^2 / 2: a linear network plus a small quadratic part (Kumar et al. 2023),
    so the initial kernel is nearly linear and barely aligned with a quadratic target."""

    def __init__(self, eps: float = 0.25):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.5 * self.eps * x * x


ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "quadratic": Quadratic,
    "linear": nn.Identity,
    "linear_quadratic": LinearQuadratic,
}


def scale_init_(module: nn.Module, scale: float) -> None:
    """Multiply every parameter by `scale` (the init-scale knob of lazy/rich and stepwise work)."""
    if scale != 1.0:
        with torch.no_grad():
            for p in module.parameters():
                p.mul_(scale)
