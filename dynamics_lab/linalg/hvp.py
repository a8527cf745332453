"""Hessian-vector products and gradients of a model's mean loss on a fixed batch, over flat params.

The operator sees the trainable parameters (``requires_grad``) as one flat vector in their own
dtype and device. It evaluates the model through ``torch.func.functional_call`` on detached
aliases of the parameters and on fresh copies of the buffers, so it never reads or writes
``.grad``, never switches train/eval mode (the model's current mode is used as is), and leaves
parameters and buffers bitwise unchanged. The aliases are live, with no copy of the weights.

Three ways to compute H v (ratios: time per matvec / time of one gradient, 64-64 tanh MLP on 500
examples, float64 CPU, `benchmarks/curvature.py`):
- "reuse" (~1.4x, plus ~1.3x once to build): the gradient graph is built on the first call,
  and each matvec is one backward through it (`hvp_reuse.py`). It keeps that graph, i.e. the
  batch's activations, alive until `release()` (or the end of a `with` block, or the operator
  being dropped), and it is a snapshot at the parameters of its first call, rebuilt when an
  in-place update moves them.
- "double_backward" (~2.6x): forward, backward with `create_graph`, and a second backward at
  every call; the same peak memory as reuse, but only for the duration of one call.
- "func" (~4x here): forward-over-reverse `jvp` of `torch.func.grad` at every call.
"auto" takes "reuse" on an unchunked batch (one chunk). With `chunk_size` splitting the batch it
takes "func" instead: a chunk size is a memory bound, and reuse would keep every chunk's graph
alive at once, i.e. the memory of the whole batch. Each falls back to the next one ("func",
respectively "double_backward") if the model fails under it on the first call.

A fixed symmetric operator: random layers (dropout, noise) would draw new masks at every
forward, making H v random and u^T H v != v^T H u. Every forward of chunk i therefore runs with
the global RNG forked and seeded to `seed + i` (and restored after), so all methods apply the
Hessian of one fixed-mask loss, the same at every call (a chunked operator's masks differ from
an unchunked one's; each is exact for its own masks). Chunking is exact because chunk losses are
means over examples; a layer that normalizes with batch statistics (BatchNorm in train mode)
breaks that, so chunking such a model is refused (`chunks.py`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from functools import partial

import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp
from torch.func import grad as func_grad

from dynamics_lab.linalg.chunks import check_chunking, fixed_rng, weighted_chunks
from dynamics_lab.linalg.hvp_reuse import GradientGraph

LossFn = Callable[[Tensor, Tensor], Tensor]
METHODS = ("auto", "reuse", "func", "double_backward")

logger = logging.getLogger(__name__)


def trainable_parameters(model: nn.Module) -> dict[str, Tensor]:
    """Detached aliases (no copy) of the parameters that require grad, by name."""
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("model has no trainable parameters (none with requires_grad=True)")
    kinds = {(p.dtype, p.device) for p in params.values()}
    if len(kinds) > 1:
        found = sorted(f"{d}@{dev}" for d, dev in kinds)
        raise ValueError(f"trainable parameters must share one dtype and device, found {found}")
    return params


def flat_params(model: nn.Module) -> tuple[list[str], list[torch.Size], Tensor]:
    """Names, shapes and a detached flat copy of the trainable parameters (`unflatten_params`)."""
    params = trainable_parameters(model)
    return list(params), [p.shape for p in params.values()], _flatten(params.values())


def unflatten_params(
    flat: Tensor, names: Sequence[str], shapes: Sequence[torch.Size]
) -> dict[str, Tensor]:
    """Named views of a flat vector with the given shapes; the inverse of `flat_params`."""
    sizes = [math.prod(s) for s in shapes]
    if flat.numel() != sum(sizes):
        raise ValueError(f"flat vector has {flat.numel()} entries, parameters need {sum(sizes)}")
    return {n: c.view(s) for n, c, s in zip(names, flat.reshape(-1).split(sizes), shapes)}


def _flatten(tensors: Iterable[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _loss_of_params(model: nn.Module, loss_fn: LossFn) -> Callable[[dict, Tensor, Tensor], Tensor]:
    """Mean loss as a pure function of a name->tensor parameter dict."""
    buffers = dict(model.named_buffers())

    def loss(params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        # Buffer copies made inside the call absorb in-place updates (BatchNorm running stats in
        # train mode), which keeps the real buffers untouched and is legal under torch.func.
        state = {**{n: b.clone() for n, b in buffers.items()}, **params}
        return loss_fn(functional_call(model, state, (x,)), y)

    return loss


def _as_leaves(params: dict[str, Tensor]) -> dict[str, Tensor]:
    # Fresh leaf aliases: autograd.grad on them never populates any parameter's .grad.
    return {n: p.detach().requires_grad_(True) for n, p in params.items()}


class HessianVectorProduct:
    """Matvec v -> H v, H the Hessian of the full-batch mean loss in the flat trainable params."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batch: tuple[Tensor, Tensor],
        *,
        chunk_size: int | None = None,
        method: str = "auto",
        seed: int | None = 0,
    ):
        if method not in METHODS:
            raise ValueError(f"unknown HVP method {method!r}; choose one of {list(METHODS)}")
        self.params = trainable_parameters(model)
        self.names = list(self.params)
        self.shapes = [p.shape for p in self.params.values()]
        first = next(iter(self.params.values()))
        self.dtype, self.device = first.dtype, first.device
        self.dim = sum(p.numel() for p in self.params.values())
        self.method = method
        self._loss = _loss_of_params(model, loss_fn)
        self._chunks = weighted_chunks(batch, chunk_size)
        check_chunking(model, self._chunks)
        self._rng = lambda i: fixed_rng(None if seed is None else seed + i, self.device)
        buffers = [b for _, b in model.named_buffers()]
        self._graph = GradientGraph(
            self._loss, self.params, self._chunks, watched=buffers, rng=self._rng
        )

    def __call__(self, v: Tensor) -> Tensor:
        """H v for a flat vector v (cast to the parameters' dtype and device)."""
        v = v.to(device=self.device, dtype=self.dtype).reshape(-1)
        tangent = unflatten_params(v, self.names, self.shapes)
        if self.method != "auto":
            return self._apply(self.method, tangent)
        first, second = ("reuse", "func") if len(self._chunks) == 1 else ("func", "double_backward")
        try:
            out = self._apply(first, tangent)
            self.method = first
        except Exception as err:
            logger.info("%s HVP failed (%s); falling back to %s", first, err, second)
            self.release()
            out = self._apply(second, tangent)
            self.method = second
        return out

    def matmat(self, v: Tensor, batched: bool = False) -> Tensor:
        """H V for the columns of V (dim x m): m matvecs, or with `batched` one vmapped pass
        (is_grads_batched through the kept graph for "reuse", vmap over the jvp for "func")."""
        v = v.to(device=self.device, dtype=self.dtype).reshape(self.dim, -1)
        if not batched or v.shape[1] == 1:
            return torch.stack([self(v[:, j]) for j in range(v.shape[1])], dim=1)
        if self.method == "auto":
            self(v[:, 0])  # settles the method (and its fallback) on one vector first
            return torch.cat([self(v[:, 0]).reshape(-1, 1),
                              self.matmat(v[:, 1:], batched=True)], dim=1)
        rows = v.T.contiguous()
        tangent = {n: t.reshape(rows.shape[0], *shape) for n, t, shape in zip(
            self.names, rows.split([math.prod(s) for s in self.shapes], dim=1), self.shapes)}
        if self.method == "reuse":
            parts = self._graph([tangent[n] for n in self.names], batched=True)
        elif self.method == "func":
            parts = None
            for i, (weight, x, y) in enumerate(self._chunks):
                with self._rng(i):
                    hv = torch.func.vmap(partial(self._flat_func_hvp, x=x, y=y),
                                         randomness="same")(tangent)
                parts = hv.mul_(weight) if parts is None else parts.add_(hv, alpha=weight)
            return parts.T
        else:  # double backward: no batched form; one product per vector
            return torch.stack([self(v[:, j]) for j in range(v.shape[1])], dim=1)
        return torch.cat([p.reshape(rows.shape[0], -1) for p in parts], dim=1).T

    def release(self) -> None:
        """Free the gradient graph a "reuse" operator holds; a later call rebuilds it."""
        self._graph.release()

    def __enter__(self) -> HessianVectorProduct:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def _apply(self, method: str, tangent: dict[str, Tensor]) -> Tensor:
        if method == "reuse":  # chunk weights are already inside the graph's gradient
            return _flatten(self._graph([tangent[n] for n in self.names]))
        hvp_fn = self._func_hvp if method == "func" else self._double_backward_hvp
        return self._combine(hvp_fn, tangent)

    def _combine(self, hvp_fn, tangent: dict[str, Tensor]) -> Tensor:
        total = None
        for i, (weight, x, y) in enumerate(self._chunks):
            with self._rng(i):
                hv = _flatten(hvp_fn(tangent, x, y))
            total = hv.mul_(weight) if total is None else total.add_(hv, alpha=weight)
        return total

    def _func_hvp(self, tangent: dict[str, Tensor], x: Tensor, y: Tensor) -> list[Tensor]:
        """Forward-over-reverse: jvp of the gradient function, the cheapest exact HVP."""
        grad_fn = func_grad(self._loss)
        if y.is_floating_point():
            # A constant target gets a lazy ZeroTensor tangent that F.mse_loss's forward-AD rule
            # tries to mutate (pytorch/pytorch#123996); an explicit zero tangent sidesteps it.
            _, hv = jvp(
                lambda p, t: grad_fn(p, x, t), (self.params, y), (tangent, torch.zeros_like(y))
            )
        else:
            _, hv = jvp(lambda p: grad_fn(p, x, y), (self.params,), (tangent,))
        return [hv[n] for n in self.names]

    def _flat_func_hvp(self, tangent: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return _flatten(self._func_hvp(tangent, x, y))

    def _double_backward_hvp(
        self, tangent: dict[str, Tensor], x: Tensor, y: Tensor
    ) -> list[Tensor]:
        """Reverse-over-reverse: grad of <grad L, v>, for models torch.func cannot trace."""
        with torch.enable_grad():
            leaves = _as_leaves(self.params)
            inputs = tuple(leaves.values())
            grads = torch.autograd.grad(
                self._loss(leaves, x, y), inputs, create_graph=True, materialize_grads=True
            )
            dot = sum((g * tangent[n]).sum() for n, g in zip(self.names, grads))
            if not dot.requires_grad:  # loss at most linear in the params: H = 0
                return [torch.zeros_like(p) for p in inputs]
            return list(torch.autograd.grad(dot, inputs, materialize_grads=True))


def hessian_vector_product(
    model: nn.Module,
    loss_fn: LossFn,
    batch: tuple[Tensor, Tensor],
    *,
    chunk_size: int | None = None,
    method: str = "auto",
    seed: int | None = 0,
) -> HessianVectorProduct:
    """Matvec of the Hessian of the mean loss over `batch`; `.dim`, `.dtype`, `.device` describe v.

    `chunk_size` bounds memory (except under "reuse", which keeps every chunk's graph): chunk
    HVPs are combined weighted by chunk size, which is exact because `loss_fn` returns a mean.
    `method` is "reuse" (gradient graph built once, one backward per matvec), "func"
    (forward-over-reverse), "double_backward" or "auto" (reuse for one chunk, func for several,
    each falling back on the first call if the model fails under it; the choice is then kept in
    `.method`). See the module docstring for costs. A "reuse" operator holds its graph until
    `.release()`; use it as a context manager (`with hessian_vector_product(...) as hvp:`) to
    free the batch's activations as soon as a measurement is done. Random layers use fixed masks
    seeded from `seed` (None: the global RNG as it is, a random operator with dropout).
    """
    return HessianVectorProduct(
        model, loss_fn, batch, chunk_size=chunk_size, method=method, seed=seed
    )


def gradient(
    model: nn.Module,
    loss_fn: LossFn,
    batch: tuple[Tensor, Tensor],
    chunk_size: int | None = None,
    seed: int | None = 0,
) -> Tensor:
    """Flat gradient of the full-batch mean loss, by reverse mode, leaving `.grad` untouched.

    Random layers draw the masks `hessian_vector_product` with the same seed uses.
    """
    params = trainable_parameters(model)
    device = next(iter(params.values())).device
    loss = _loss_of_params(model, loss_fn)
    chunks = weighted_chunks(batch, chunk_size)
    check_chunking(model, chunks)
    total = None
    with torch.enable_grad():
        for i, (weight, x, y) in enumerate(chunks):
            leaves = _as_leaves(params)
            with fixed_rng(None if seed is None else seed + i, device):
                value = loss(leaves, x, y)
            g = _flatten(
                torch.autograd.grad(value, tuple(leaves.values()), materialize_grads=True)
            )
            total = g.mul_(weight) if total is None else total.add_(g, alpha=weight)
    return total
