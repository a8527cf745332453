"""Hessian spectrum summaries on a fixed batch: top eigenvalues, trace, spectral density.

Each Hessian function is a thin wrapper that builds the HVP operator of `hvp.py` and hands it to
a generic routine over any symmetric matvec (`lanczos`, `hutchinson_trace`, `spectral_density`),
so the numerics are tested on explicit matrices. Random probes come from `generator`; with none,
a private fixed-seed generator is used, so measurements never consume the training RNG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dynamics_lab.linalg.hvp import LossFn, hessian_vector_product
from dynamics_lab.linalg.lanczos import (
    LanczosResult,
    Matvec,
    default_generator,
    lanczos,
    random_vector,
    ritz_pairs,
    tridiagonalize,
)


@dataclass
class TraceEstimate:
    """A Hutchinson trace estimate: sample mean of v^T A v and its standard error."""

    value: float
    stderr: float  # std / sqrt(n_samples); nan when n_samples == 1
    n_samples: int


@dataclass
class SpectralDensity:
    """Smoothed eigenvalue density on a grid, plus the raw SLQ quadrature nodes and weights."""

    grid: Tensor  # (grid_size,) float64
    density: Tensor  # (grid_size,) float64, sum(density) * dx == 1
    nodes: Tensor  # (n_draws, m) Ritz values per draw (padded rows carry zero weight)
    weights: Tensor  # (n_draws, m) squared first components; each row sums to 1


def top_hessian_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    batch: tuple[Tensor, Tensor],
    k: int = 1,
    tol: float = 1e-3,
    max_iter: int = 100,
    v0: Tensor | None = None,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = 0,
) -> LanczosResult:
    """The k largest algebraic Hessian eigenpairs of the mean loss on `batch` (Lanczos on HVPs).

    `seed` fixes the masks of random layers (see `hessian_vector_product`).
    """
    hvp = hessian_vector_product(model, loss_fn, batch, chunk_size=chunk_size, seed=seed)
    return lanczos(
        hvp, hvp.dim, k=k, max_iter=max_iter, tol=tol, v0=v0,
        dtype=hvp.dtype, device=hvp.device, generator=generator,
    )  # fmt: skip


def hutchinson_trace(
    matvec: Matvec,
    dim: int,
    n_samples: int = 100,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> TraceEstimate:
    """Trace of a symmetric operator from Rademacher probes v: mean and stderr of v^T A v."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    generator = generator or default_generator()
    samples = torch.empty(n_samples, dtype=torch.float64)
    for i in range(n_samples):
        v = random_vector(dim, generator, dtype=dtype, device=device, rademacher=True)
        samples[i] = torch.dot(v.double(), matvec(v).reshape(-1).double()).item()
    stderr = samples.std().item() / math.sqrt(n_samples) if n_samples > 1 else math.nan
    return TraceEstimate(samples.mean().item(), stderr, n_samples)


def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    batch: tuple[Tensor, Tensor],
    n_samples: int = 100,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = 0,
) -> TraceEstimate:
    """Hutchinson estimate of the trace of the Hessian of the mean loss on `batch`."""
    hvp = hessian_vector_product(model, loss_fn, batch, chunk_size=chunk_size, seed=seed)
    return hutchinson_trace(hvp, hvp.dim, n_samples, generator, hvp.dtype, hvp.device)


def spectral_density(
    matvec: Matvec,
    dim: int,
    n_draws: int = 5,
    n_iter: int = 50,
    sigma: float | None = None,
    grid_size: int = 500,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> SpectralDensity:
    """Stochastic Lanczos quadrature (Ghorbani et al. 2019) density of a symmetric operator.

    Per draw: a random unit start vector, `n_iter` Lanczos steps (full reorth, capped at `dim`,
    fewer at an invariant subspace), nodes = eigenvalues of T, weights = squared first components
    of T's eigenvectors. The density averages Gaussian-smoothed quadratures over draws on a grid
    spanning [min node - 5 sigma, max node + 5 sigma]; sigma defaults to 1% of the node range.
    """
    if n_draws < 1 or n_iter < 1 or grid_size < 2:
        raise ValueError("need n_draws >= 1, n_iter >= 1 and grid_size >= 2")
    generator = generator or default_generator()
    nodes, weights = [], []
    for _ in range(n_draws):
        start = random_vector(dim, generator, dtype=dtype, device=device)
        tri = tridiagonalize(matvec, start, n_iter)
        theta, s = ritz_pairs(tri.alphas, tri.betas)
        nodes.append(theta)
        weights.append(s[0] ** 2)
    nodes_t, weights_t = _pad_rows(nodes), _pad_rows(weights, fill=0.0)
    grid, density = _smoothed_density(nodes_t, weights_t, sigma, grid_size)
    return SpectralDensity(grid, density, nodes_t, weights_t)


def hessian_spectral_density(
    model: nn.Module,
    loss_fn: LossFn,
    batch: tuple[Tensor, Tensor],
    n_draws: int = 5,
    n_iter: int = 50,
    sigma: float | None = None,
    grid_size: int = 500,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    seed: int | None = 0,
) -> SpectralDensity:
    """SLQ spectral density of the Hessian of the mean loss on `batch` (see `spectral_density`)."""
    hvp = hessian_vector_product(model, loss_fn, batch, chunk_size=chunk_size, seed=seed)
    return spectral_density(
        hvp, hvp.dim, n_draws, n_iter, sigma, grid_size, generator, hvp.dtype, hvp.device
    )


def _pad_rows(rows: list[Tensor], fill: float | None = None) -> Tensor:
    """Stack rows of unequal length; short rows repeat their last entry (or take `fill`)."""
    width = max(len(r) for r in rows)
    padded = []
    for r in rows:
        pad = r.new_full((width - len(r),), r[-1].item() if fill is None else fill)
        padded.append(torch.cat([r, pad]))
    return torch.stack(padded)


def _smoothed_density(
    nodes: Tensor, weights: Tensor, sigma: float | None, grid_size: int
) -> tuple[Tensor, Tensor]:
    """Grid and the draw-averaged Gaussian mixture of the quadratures, normalised to sum*dx = 1."""
    lo, hi = nodes.min().item(), nodes.max().item()
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    if sigma is None:
        sigma = 0.01 * span
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    grid = torch.linspace(lo - 5 * sigma, hi + 5 * sigma, grid_size, dtype=torch.float64)
    z = (grid[None, None, :] - nodes[..., None]) / sigma
    kernel = torch.exp(-0.5 * z**2) / (sigma * math.sqrt(2 * math.pi))
    density = (weights[..., None] * kernel).sum(dim=1).mean(dim=0)
    dx = (grid[1] - grid[0]).item()
    return grid, density / (density.sum() * dx)
