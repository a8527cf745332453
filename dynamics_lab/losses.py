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


LOSSES = {"squared": squared, "cross_entropy": cross_entropy, "logistic": logistic, "hinge": hinge}


def accuracy(outputs: torch.Tensor, targets: torch.Tensor, loss: str) -> torch.Tensor | None:
    """Fraction correct for classification losses; None for regression."""
    if loss == "cross_entropy":
        return (outputs.argmax(dim=-1) == targets).float().mean()
    if loss in ("logistic", "hinge"):
        return (torch.sign(outputs.reshape(targets.shape)) == targets).float().mean()
    return None
