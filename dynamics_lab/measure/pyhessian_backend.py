"""PyHessian's power iteration behind the same result type as our Lanczos, for side-by-side checks.

PyHessian (Yao et al. 2020) has faults this adapter guards against:
- it adds any leftover `.grad` into the gradient it differentiates (its `get_params_grad` reads
  `param.grad`), so every `.grad` is set to None before it runs and restored afterwards;
- it switches the model to eval mode and never back, which measures another function than the
  other backends (no dropout, BatchNorm's running statistics); it sees the model through a
  wrapper whose train()/eval() do nothing, so it runs in the model's own mode, and since its
  forward then updates BatchNorm's running statistics in train mode, buffers are restored after;
- it draws start vectors (and dropout masks) from the global RNG in the default dtype, so it runs
  under a forked RNG seeded to `seed` (training randomness is untouched) and with the parameters'
  dtype as default: its one forward draws the dropout masks `hessian_vector_product(...,
  seed=seed)` draws, so both apply the same fixed-mask Hessian;
- its `density()` calls `torch.eig`, removed from PyTorch, so only `eigenvalues()` is used here
  (HessianSpectrum refuses density with this backend).
Power iteration converges to the eigenvalues of largest magnitude, not the largest algebraic
ones; at the edge of stability the top eigenvalue dominates, so the two agree there.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import warnings
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from dynamics_lab.linalg.hvp import LossFn, hessian_vector_product
from dynamics_lab.linalg.lanczos import LanczosResult


@contextlib.contextmanager
def clean_slate(model: nn.Module) -> Iterator[None]:
    """No `.grad` on entry (pyhessian would add it in); grads, modes and buffers restored."""
    grads = {p: p.grad for p in model.parameters()}
    modes = {m: m.training for m in model.modules()}
    buffers = {b: b.detach().clone() for b in model.buffers()}
    for p in grads:
        p.grad = None
    try:
        yield
    finally:
        for p, g in grads.items():
            p.grad = g
        for m, mode in modes.items():
            m.training = mode
        with torch.no_grad():
            for b, saved in buffers.items():
                b.copy_(saved)


class ModeLocked(nn.Module):
    """`model` as pyhessian sees it: its eval() (train(False)) leaves the model's modes alone."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.inner = model

    def train(self, mode: bool = True) -> ModeLocked:
        return self

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """pyhessian's random vectors take the default dtype; make it the parameters' dtype."""
    previous = torch.get_default_dtype()
    if dtype in (torch.float32, torch.float64):
        torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@contextlib.contextmanager
def counting_iterations(counts: collections.Counter) -> Iterator[None]:
    """Count power iterations per eigenvalue: `orthnormal(v, found)` runs once before each HVP."""
    module = importlib.import_module("pyhessian.hessian")
    original = module.orthnormal

    def counted(w, v_list):
        counts[len(v_list)] += 1
        return original(w, v_list)

    module.orthnormal = counted
    try:
        yield
    finally:
        module.orthnormal = original


def pyhessian_top_eigenpairs(model: nn.Module, loss_fn: LossFn, batch: tuple[Tensor, Tensor],
                             k: int = 1, max_iter: int = 100, tol: float = 1e-3,
                             seed: int = 0) -> LanczosResult:
    """Top-k Hessian eigenpairs by pyhessian's `eigenvalues(maxIter, tol, top_n)`.

    `tol` is pyhessian's own rule (relative change of the estimate between two iterations), not
    a residual bound. `residuals` are ||H v - lambda v|| measured with our HVP (k more matvecs,
    not counted in `n_matvec`); `converged` means every eigenvalue stopped before `max_iter`.
    """
    from pyhessian import hessian

    x, y = batch
    params = [p for p in model.parameters() if p.requires_grad]
    counts: collections.Counter = collections.Counter()
    devices = [x.device.index or 0] if x.is_cuda else []
    with contextlib.ExitStack() as stack:
        stack.enter_context(clean_slate(model))
        stack.enter_context(torch.random.fork_rng(devices=devices))
        stack.enter_context(default_dtype(params[0].dtype))
        stack.enter_context(counting_iterations(counts))
        stack.enter_context(torch.enable_grad())
        stack.enter_context(warnings.catch_warnings())
        # backward(create_graph=True) into .grad warns of a reference cycle; .grad is reset after.
        warnings.simplefilter("ignore", UserWarning)
        torch.manual_seed(seed)
        solver = hessian(ModeLocked(model), loss_fn, data=(x, y), cuda=x.is_cuda)
        values, vectors = solver.eigenvalues(maxIter=max_iter, tol=tol, top_n=k)
        flat = torch.stack([torch.cat([t.detach().reshape(-1) for t in v]) for v in vectors], 1)
        del solver  # drops the create_graph gradient graph before .grad is restored
    order = sorted(range(k), key=lambda i: -values[i])
    eigenvalues = torch.tensor([values[i] for i in order], dtype=torch.float64)
    flat = flat[:, order]
    flat = flat / flat.norm(dim=0, keepdim=True)
    hvp = hessian_vector_product(model, loss_fn, batch, seed=seed)
    residuals = torch.tensor(
        [float((hvp(flat[:, i]) - eigenvalues[i].item() * flat[:, i]).norm()) for i in range(k)],
        dtype=torch.float64)
    converged = all(counts[i] < max_iter for i in range(k))
    return LanczosResult(eigenvalues, flat, residuals, sum(counts.values()), converged)
