"""Hessian-vector products of every member of a stacked ensemble at once.

Members never interact: the summed loss of K members has a block-diagonal Hessian whose block m
is member m's own. So one gradient graph over the stacked parameters (built once per
measurement, as linalg/hvp.py's "reuse" does for one model) and one backward per round give
H_m v_m for every member together. The parameters are aliased, not copied; a member's products
equal what `hessian_vector_product` gives its own network on the same batch, up to rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from dynamics_lab.linalg.chunks import fixed_rng


def has_random_layers(model: nn.Module) -> bool:
    """Dropout with p > 0: its masks would have to match a single run's draw for draw."""
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())


class StackedHessian:
    """(R, dim) block of tangents -> (R, dim) block of H_m v_m for the members `rows` (all
    when None) over the trainable stacked parameters (`params`: name -> (K, *shape));
    `batch` is each member's (x, y), stacked (K rows)."""

    def __init__(self, skeleton: nn.Module, params: dict[str, Tensor],
                 buffers: dict[str, Tensor], loss_fn: Callable[[Tensor, Tensor], Tensor],
                 batch: tuple[Tensor, Tensor], seed: int | None = 0,
                 rows: list[int] | None = None):
        if rows is not None:  # a subset: copies of its rows (the parameters are not moving)
            index = torch.tensor(rows, device=next(iter(params.values())).device)
            pick = lambda t: t.detach().index_select(0, index).requires_grad_(  # noqa: E731
                t.requires_grad)
            params, buffers = ({n: pick(t) for n, t in d.items()} for d in (params, buffers))
            batch = tuple(t.index_select(0, index) for t in batch)
        self.rows = list(rows) if rows is not None else list(range(len(batch[0])))
        self.params = {n: p for n, p in params.items() if p.requires_grad}
        first = next(iter(self.params.values()))
        self.size, self.dtype, self.device = first.shape[0], first.dtype, first.device
        self.shapes = [p.shape[1:] for p in self.params.values()]
        self.dim = sum(math.prod(s) for s in self.shapes)
        leaves = {n: p.detach().requires_grad_(True) for n, p in self.params.items()}
        # Frozen parameters and buffers ride along, one row per member.
        fixed = {n: t.detach() for n, t in {**params, **buffers}.items() if n not in self.params}
        x, y = batch

        def one(p: dict[str, Tensor], rest: dict[str, Tensor], xm: Tensor, ym: Tensor) -> Tensor:
            return loss_fn(functional_call(skeleton, {**p, **rest}, (xm,)), ym)

        with torch.enable_grad(), fixed_rng(seed, self.device):
            losses = vmap(one, randomness="same")(leaves, fixed, x, y)
            self._grads = torch.autograd.grad(losses.sum(), list(leaves.values()),
                                              create_graph=True)
        self._leaves = list(leaves.values())

    def __call__(self, block: Tensor) -> Tensor:
        block = block.to(self.device, self.dtype).reshape(self.size, self.dim)
        parts = block.split([math.prod(s) for s in self.shapes], dim=1)
        tangents = [t.reshape(self.size, *s) for t, s in zip(parts, self.shapes)]
        hv = torch.autograd.grad(self._grads, self._leaves, grad_outputs=tangents,
                                 retain_graph=True, allow_unused=True)
        return torch.cat([(torch.zeros_like(t) if h is None else h).reshape(self.size, -1)
                          for h, t in zip(hv, tangents)], dim=1)

    def release(self) -> None:
        """Drop the graph (and the batch's activations it holds)."""
        self._grads, self._leaves = (), []

