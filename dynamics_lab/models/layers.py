"""Small shared pieces: activations by name, token input embedding, init scaling."""

from __future__ import annotations

import torch
from torch import nn


class Quadratic(nn.Module):
    """x -> x^2, the activation of the solvable grokking models (Gromov 2023)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "quadratic": Quadratic,
    "linear": nn.Identity,
}


def scale_init_(module: nn.Module, scale: float) -> None:
    """Multiply every parameter by `scale` (the init-scale knob of lazy/rich and stepwise work)."""
    if scale != 1.0:
        with torch.no_grad():
            for p in module.parameters():
                p.mul_(scale)
