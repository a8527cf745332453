"""Losses and accuracy by name; a task declares which one it trains with."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def squared(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0.5 * ||f(x) - y||^2 averaged over examples (the edge-of-stability convention)."""
    diff = outputs.reshape(outputs.shape[0], -1) - targets.reshape(targets.shape[0], -1)
    return 0.5 * diff.pow(2).sum(dim=1).mean()


def cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs, targets)


def logistic(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log(1 + exp(-y f)) for labels in {-1, +1}."""
    return F.softplus(-targets * outputs.reshape(targets.shape)).mean()


def hinge(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """max(0, 1 - y f) for labels in {-1, +1}."""
    return F.relu(1 - targets * outputs.reshape(targets.shape)).mean()


def barlow_twins(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """||C - I||_F^2, C the symmetrised cross-correlation of the two views' embeddings (outputs
    n x 2 x d): Barlow Twins without batch norm, lambda = 1, the linear-model objective of Simon
    et al. (2023). No targets. Not a mean over examples: evaluate on whole splits."""
    z = outputs.reshape(outputs.shape[0], 2, -1)
    cross = z[:, 0].T @ z[:, 1] / z.shape[0]
    c = (cross + cross.T) / 2
    return (c - torch.eye(c.shape[0], dtype=c.dtype, device=c.device)).pow(2).sum()


LOSSES = {"squared": squared, "cross_entropy": cross_entropy, "logistic": logistic, "hinge": hinge,
          "barlow_twins": barlow_twins}


def accuracy(outputs: torch.Tensor, targets: torch.Tensor, loss: str) -> torch.Tensor | None:
    """Fraction correct for classification losses; None for regression."""
    if loss == "cross_entropy":
        return (outputs.argmax(dim=-1) == targets).float().mean()
    if loss in ("logistic", "hinge"):
        return (torch.sign(outputs.reshape(targets.shape)) == targets).float().mean()
    return None
