"""Per-example gradients and the statistics built from them (gradient noise scale)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from dynamics_lab.linalg.hvp import LossFn, trainable_parameters


def per_example_gradients(model: nn.Module, loss_fn: LossFn, batch: tuple[Tensor, Tensor],
                          chunk_size: int = 256) -> Tensor:
    """(n, P) flat per-example loss gradients, by vmap over torch.func.grad; .grad untouched."""
    params = trainable_parameters(model)
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def one(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        out = functional_call(model, {**buffers, **p}, (x.unsqueeze(0),))
        return loss_fn(out, y.unsqueeze(0))

    per_example = vmap(grad(one), in_dims=(None, 0, 0))
    x, y = batch
    rows = []
    for start in range(0, len(x), chunk_size):
        g = per_example(params, x[start:start + chunk_size], y[start:start + chunk_size])
        rows.append(torch.cat([t.reshape(t.shape[0], -1) for t in g.values()], dim=1))
    return torch.cat(rows)


def gradient_noise_scale(per_example: Tensor) -> tuple[float, float, float]:
    """(B_simple, |G|^2, tr Sigma) with unbiased estimates (McCandlish et al. 2018, App. A).

    B_simple = tr(Sigma) / |G|^2, the batch size at which gradient noise and signal balance.
    """
    n = per_example.shape[0]
    if n < 2:
        raise ValueError("the gradient noise scale needs at least two examples")
    mean = per_example.mean(dim=0)
    trace_sigma = per_example.var(dim=0, unbiased=True).sum()
    # |mean|^2 overestimates |G|^2 by tr(Sigma)/n.
    g2 = mean.pow(2).sum() - trace_sigma / n
    return float(trace_sigma / g2), float(g2), float(trace_sigma)
