"""Lanczos with full reorthogonalization for symmetric operators given only as a matvec.

The recurrence runs in the computation dtype (the matvec's, e.g. the parameters'), on its
device; the tridiagonal T is accumulated in float64 on the CPU and eigendecomposed there (it is
tiny). Every new vector is orthogonalized against the whole basis twice (classical Gram-Schmidt,
"twice is enough"), so no ghost eigenvalues appear and the basis costs `max_iter * dim` memory.

Convergence uses the Ritz residual bound: for a Ritz pair (theta, y = Q s) of the m-step
factorization A Q = Q T + beta_m q_{m+1} e_m^T, ||A y - theta y|| = |beta_m * s_m| exactly up to
rounding, so no extra matvec is spent to report residuals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Matvec = Callable[[Tensor], Tensor]
# A residual below this many float eps (relative to ||A q||) means the Krylov space is invariant.
_BREAKDOWN_EPS = 100


@dataclass
class LanczosResult:
    """Top-k Ritz pairs: eigenvalues descending (largest algebraic first), unit eigenvectors."""

    eigenvalues: Tensor  # (k,) float64, CPU
    eigenvectors: Tensor  # (dim, k) computation dtype and device
    residuals: Tensor  # (k,) float64, CPU: Ritz residual bounds |beta_m s_m| ~ ||A v - lambda v||
    n_matvec: int
    converged: bool
    # (dim, extra) Ritz vectors of the next Ritz values (not converged), to warm-start a later
    # solve on a nearby operator (see `warm_start`); None unless asked for.
    extra_vectors: Tensor | None = None


@dataclass
class Tridiagonalization:
    """m Lanczos steps: basis rows Q (m x dim) and T = tridiag(betas[:-1], alphas, betas[:-1])."""

    alphas: Tensor  # (m,) float64 diagonal of T
    betas: Tensor  # (m,) float64: betas[:-1] off-diagonal, betas[-1] = beta_m, the last residual
    basis: Tensor  # (m, dim) orthonormal Lanczos vectors, computation dtype
    n_matvec: int


def default_generator() -> torch.Generator:
    """A private, fixed-seed CPU generator: results reproduce and the global RNG is untouched."""
    return torch.Generator().manual_seed(0)


def random_vector(
    dim: int,
    generator: torch.Generator,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    rademacher: bool = False,
) -> Tensor:
    """A Gaussian (or Rademacher +-1) vector drawn on the generator's device, moved to `device`."""
    if rademacher:
        v = torch.randint(0, 2, (dim,), generator=generator, device=generator.device)
        v = v.to(dtype).mul_(2).sub_(1)
    else:
        v = torch.randn(dim, generator=generator, device=generator.device, dtype=dtype)
    return v.to(device=device or generator.device)


def ritz_pairs(alphas: Tensor, betas: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (descending) and eigenvectors (columns) of the tridiagonal T, in float64."""
    off = betas[:-1]
    t = torch.diag(alphas) + torch.diag(off, 1) + torch.diag(off, -1)
    theta, s = torch.linalg.eigh(t)
    return theta.flip(0), s.flip(1)


def _orthogonalize(w: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    """w minus its projection on the rows of q, applied twice; returns (w, total coefficients)."""
    h = q @ w
    w = w - h @ q
    h2 = q @ w
    return w - h2 @ q, h + h2


def tridiagonalize(
    matvec: Matvec,
    v0: Tensor,
    n_iter: int,
    *,
    stop: Callable[[list[float], list[float]], bool] | None = None,
    restart: Callable[[], Tensor] | None = None,
) -> Tridiagonalization:
    """Up to `n_iter` Lanczos steps from `v0` (computation dtype/device taken from v0).

    `stop(alphas, betas)` is asked after each step and ends the run when it returns True. At an
    invariant subspace (beta ~ 0) the run ends, unless `restart` supplies a fresh vector: it is
    orthogonalized against the basis and the recurrence goes on with a zero coupling in T.
    A single Krylov space holds each eigenvalue once, so restarting after a closed multi-step
    space is what lets repeated eigenvalues show up; `stop` is not asked at that step.
    """
    dim = v0.numel()
    n_iter = min(n_iter, dim)
    basis = v0.new_empty(n_iter, dim)
    basis[0] = _unit(v0.reshape(-1))
    eps = torch.finfo(v0.dtype).eps
    alphas: list[float] = []
    betas: list[float] = []
    a_norm, block_start = 0.0, 0
    for j in range(n_iter):
        w = matvec(basis[j]).reshape(-1).to(basis)
        a_norm = max(a_norm, float(w.norm()))
        w, coeffs = _orthogonalize(w, basis[: j + 1])
        alphas.append(float(coeffs[j]))
        beta = float(w.norm())
        last = j + 1 == n_iter
        if beta > _BREAKDOWN_EPS * eps * a_norm:
            betas.append(beta)
            if (stop is not None and stop(alphas, betas)) or last:
                break
            basis[j + 1] = w / beta
            continue
        closed_block = j > block_start
        if restart is None or last:
            betas.append(beta)
            break
        betas.append(0.0)
        basis[j + 1] = _unit(_orthogonalize(restart().to(basis), basis[: j + 1])[0])
        block_start = j + 1
        if not closed_block and stop is not None and stop(alphas, betas):
            break
    m = len(alphas)
    return Tridiagonalization(
        alphas=torch.tensor(alphas, dtype=torch.float64),
        betas=torch.tensor(betas, dtype=torch.float64),
        basis=basis[:m],
        n_matvec=m,
    )


def _unit(v: Tensor) -> Tensor:
    norm = v.norm()
    if not torch.isfinite(norm) or norm == 0:
        raise ValueError("Lanczos start vector must be finite and nonzero")
    return v / norm


def _top_k_status(
    alphas: Tensor, betas: Tensor, k: int, tol: float
) -> tuple[Tensor, Tensor, Tensor, bool]:
    """Top-k Ritz values, their T-eigenvectors, residual bounds, and whether all k converged."""
    theta, s = ritz_pairs(alphas, betas)
    # Relative to |theta_i|, floored at sqrt(eps) * ||T|| so eigenvalues near zero can converge.
    floor = torch.finfo(torch.float64).eps ** 0.5 * theta.abs().max()
    theta, s = theta[:k], s[:, :k]
    bounds = (betas[-1] * s[-1]).abs()
    converged = len(alphas) >= k and bool((bounds <= tol * theta.abs().clamp_min(floor)).all())
    return theta, s, bounds, converged


def lanczos(
    matvec: Matvec,
    dim: int,
    k: int = 1,
    max_iter: int = 100,
    tol: float = 1e-3,
    v0: Tensor | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    extra_vectors: int = 0,
) -> LanczosResult:
    """The k largest algebraic eigenpairs of a symmetric operator, by Lanczos with full reorth.

    Stops once every top-k Ritz pair has residual bound |beta_m s_{m,i}| <= tol * |theta_i|
    (checked every step), at `max_iter` (capped at `dim`), or when the space is exhausted.
    The recurrence runs in `dtype` on `device` (default: those of `v0`, else float64 on CPU);
    `v0` warm-starts (see `warm_start`), else a Gaussian vector is drawn from `generator`
    (default: `default_generator()`, never the global RNG). `extra_vectors` > 0 also returns
    the Ritz vectors after the top k (`.extra_vectors`), for the next warm start.
    """
    if not 1 <= k <= dim:
        raise ValueError(f"k must be in [1, dim={dim}], got {k}")
    max_iter = min(max_iter, dim)
    if max_iter < k:
        raise ValueError(f"max_iter={max_iter} cannot produce k={k} eigenpairs")
    dtype = dtype or (v0.dtype if v0 is not None else torch.float64)
    device = device or (v0.device if v0 is not None else "cpu")
    generator = generator or default_generator()

    def draw() -> Tensor:
        return random_vector(dim, generator, dtype=dtype, device=device)

    start = draw() if v0 is None else v0.to(device=device, dtype=dtype)

    def stop(alphas: list[float], betas: list[float]) -> bool:
        if len(alphas) < k:
            return False
        a, b = torch.tensor(alphas, dtype=torch.float64), torch.tensor(betas, dtype=torch.float64)
        return _top_k_status(a, b, k, tol)[3]

    tri = tridiagonalize(matvec, start, max_iter, stop=stop, restart=draw)
    theta, s, bounds, converged = _top_k_status(tri.alphas, tri.betas, k, tol)
    vectors = _ritz_vectors(tri.basis, s)
    extra = None
    if extra_vectors > 0:
        _, s_all = ritz_pairs(tri.alphas, tri.betas)
        extra = _ritz_vectors(tri.basis, s_all[:, k : k + extra_vectors])
    return LanczosResult(theta, vectors, bounds, tri.n_matvec, converged, extra)


def _ritz_vectors(basis: Tensor, s: Tensor) -> Tensor:
    vectors = basis.T @ s.to(basis)
    return vectors / vectors.norm(dim=0, keepdim=True)


def warm_start(
    previous: Tensor, generator: torch.Generator, mix: float = 1.0
) -> Tensor:
    """A start vector that tracks the top eigenvectors of a slowly changing operator.

    The unit sum of the previous Ritz vectors (the top k and one or more after them, as
    `lanczos(..., extra_vectors=1)` returns them) plus a random unit vector of weight `mix`.
    A start of the old top eigenvector alone spans a Krylov space that misses a direction
    orthogonal to it whose eigenvalue has grown past it; here every tracked direction starts
    with a weight of order 1/sqrt(k+1), so a swap among them is found whatever the gap, and the
    random part (weight ~mix/sqrt(2 dim) on any other direction) lets a direction from further
    down the spectrum that has become clearly the largest win before the top k converge.
    """
    w = previous.reshape(previous.shape[0], -1).sum(dim=1)
    r = random_vector(w.numel(), generator, dtype=w.dtype, device=w.device)
    return _unit(w) + mix * _unit(r)
