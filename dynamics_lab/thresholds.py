"""The stability threshold of an optimizer's step on a quadratic: the largest (preconditioned)
sharpness it survives, 2/eta for plain gradient descent. Torch-free and written once:
measure/stability.py reads the hyperparameters from a torch optimizer, the edge-of-stability
detector from a run's config.

  SGD          2/eta; heavy ball beta: (2 + 2 beta)/(eta (1 - dampening));
               Nesterov: (2 + 2 beta)/(eta (1 + 2 beta))
  Adam/AdamW   (2 + 2 beta1)/((1 - beta1) eta) (Cohen et al. 2022)
"""

from __future__ import annotations

import math


def stability_threshold(lr: float, *, adam_beta1: float | None = None, momentum: float = 0.0,
                        nesterov: bool = False, dampening: float = 0.0) -> float:
    """The threshold of a step of size `lr`: Adam's when `adam_beta1` is given, else SGD's with
    the given momentum (0 for plain gradient descent). A step that moves nothing (lr 0, or
    a momentum buffer that takes no gradient) is stable at any sharpness: inf."""
    if lr <= 0 or (adam_beta1 is None and momentum and not nesterov and dampening >= 1):
        return math.inf
    if adam_beta1 is not None:
        return (2 + 2 * adam_beta1) / ((1 - adam_beta1) * lr)
    if momentum == 0:
        return 2 / lr
    if nesterov:
        return (2 + 2 * momentum) / (lr * (1 + 2 * momentum))
    # Dampening d scales each gradient by (1 - d) inside the momentum buffer.
    return (2 + 2 * momentum) / (lr * (1 - dampening))
