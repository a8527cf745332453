"""Top eigenpairs of a slowly changing symmetric operator, tracked from one call to the next.

Along a training run the top Hessian eigenspace moves a little between two measurements, so a
solver that starts from the previous Ritz vectors needs a few products where Lanczos from a
(partly) random start needs twenty. One call:

1. applies the operator to the carried block: the previous top k Ritz vectors, `guard` more
   (the next Ritz vectors, so a swap with the k+1-th is seen) and one scout (below);
2. Rayleigh-Ritz on that space; the residual R_j = A y_j - theta_j y_j of every Ritz pair is
   free, since A y_j is a combination of products already taken;
3. certifies each of the top k Ritz values from its residual: an eigenvalue of A lies within
   eps_j = ||R_j|| of theta_j (Bauer-Fike for symmetric A; the quadratic Kato-Temple bound would
   need the gap to the rest of A's spectrum, which the space cannot see). Accepted when every
   eps_j <= tol |theta_j| and no lower Ritz pair may hide an eigenvalue above the k-th value: a
   vector with weight w >= `hidden_weight` on an eigenvalue lambda has lambda <= theta_i +
   eps_i / sqrt(w) (the old top eigenvector after the top has turned away from it is such a
   vector; the top-k residuals do not see it);
4. otherwise adds the residuals of the open pairs to the space (a block Krylov step: one
   product each; of the lower pairs only the one reaching highest) and repeats, up to
   `max_expand` extra products; past that it falls back to Lanczos warm-started from the
   current Ritz vectors, and reports Lanczos's own convergence.

Where it pays: where the top eigenspace moves little between calls relative to its gaps (a
near-degenerate pair rotating inside its plane costs k + guard + 1 products a call). Where it
does not (measured on the edge-of-stability runs every 25 steps, `benchmarks/sharpness_solvers.py`):
the carried block never certified alone (first residuals ~15% of lambda; at the edge tens of
eigenvalues sit within 10% of the top and the top eigenvector turns between measurements), and
with its fallbacks it took 26.2 products a measurement against 22.6 for warm Lanczos. After a
fallback HessianSpectrum runs warm Lanczos directly (`retry_after`) to bound that loss. No
solver that starts from the previous measurement does much better there
(`benchmarks/sharpness_floor.py`): handed the previous Hessian's exact top 4 eigenvectors,
Rayleigh-Ritz on 4 products lands within 1e-3 of the new top eigenvalue in 39% of the
measurements and certifies none, and Lanczos from the previous exact top eigenvector needs 16.9
products a measurement to reach tol 1e-3.

The scout is one more vector carried outside the block: the residual of the lower Ritz pair
that reaches highest (a Krylov direction, already computed), with fresh randomness mixed in
(`scout_mix`); its product is part of step 1. A direction that rises from the bulk to the top
gains weight in the scout call after call, and joins the block.

What no residual can see: a direction orthogonal to every carried vector that jumps to the
top between two calls (the carried pairs stay exact eigenpairs); a larger eigenvalue with
weight below `hidden_weight` in the carried space (found on a later call, as the scout's
weight on it grows); with k >= 2, a second copy of a repeated or tightly clustered top
eigenvalue (single-vector Lanczos, in a cold start, fallback or audit, finds one copy of a
repeated eigenvalue; a reported lambda_i is then within its bound of an eigenvalue, not
necessarily the i-th). The scout's random part finds a jump within a few calls (about
log(sqrt(dim)) / log(lambda_new / lambda_bulk)); `audit` runs a warm-started Lanczos, which
has a random part, to find it at once (the measurement runs one every `audit_every` calls).
So `certified` says: each reported value is within tol of an eigenvalue of A; that it is the
i-th largest is what the carried space, the scout and the audits make likely, not proven.

`matmat` applies the operator to a block of vectors at once (dim x m -> dim x m); a batched
product (one vmapped pass) can be cheaper per vector than m single products where the device
has idle width (`HessianVectorProduct.matmat`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from dynamics_lab.linalg.lanczos import lanczos, random_vector, warm_start

Matmat = Callable[[Tensor], Tensor]
# Columns whose norm falls below this many float eps (relative) after orthogonalization are
# linearly dependent on the space already held and are dropped.
_DEPENDENT_EPS = 1e3


@dataclass
class TrackResult:
    """Top-k Ritz pairs of one call, their certified error bounds and the state for the next."""

    eigenvalues: Tensor  # (k,) float64, CPU, descending
    eigenvectors: Tensor  # (dim, k) computation dtype and device
    residuals: Tensor  # (k,) float64, CPU: ||A y - theta y||
    bounds: Tensor  # (k,) float64, CPU: |theta - lambda| <= bound for some eigenvalue lambda of A
    n_matvec: int
    certified: bool  # every bound <= tol |theta| (or Lanczos converged, after a fallback)
    method: str  # "tracked", "expanded", "lanczos" (cold or fallback) or "audit"
    block: Tensor  # (dim, k + guard): carried to the next call
    scout: Tensor  # (dim,): carried to the next call


def _orthonormalize(new: Tensor, basis: Tensor | None) -> Tensor:
    """Columns of `new` orthogonalized against `basis` (twice) and among themselves; dependent
    columns (nothing left after projection) are dropped."""
    eps = torch.finfo(new.dtype).eps
    scale = new.norm(dim=0).clamp_min(torch.finfo(new.dtype).tiny)
    if basis is not None and basis.shape[1]:
        for _ in range(2):
            new = new - basis @ (basis.T @ new)
    keep = []
    out = []
    for j in range(new.shape[1]):
        w = new[:, j]
        for _ in range(2):
            for q in out:
                w = w - (q @ w) * q
        norm = w.norm()
        if norm > _DEPENDENT_EPS * eps * scale[j]:
            out.append(w / norm)
            keep.append(j)
    if not out:
        return new[:, :0]
    return torch.stack(out, dim=1)


def _reach(theta: Tensor, eps: Tensor, hidden_weight: float) -> Tensor:
    """How high an eigenvalue each Ritz vector may hide: a vector with Rayleigh quotient theta
    and residual eps that puts weight w on an eigenvalue lambda has eps^2 >= w (lambda -
    theta)^2, so lambda <= theta + eps / sqrt(w) for every w >= hidden_weight."""
    return theta + eps / hidden_weight ** 0.5


def _open_pairs(theta: Tensor, eps: Tensor, bounds: Tensor, k: int, tol: float,
                floor: float, hidden_weight: float) -> Tensor:
    """Ritz pairs that still need a Krylov step: a top-k value whose bound exceeds tol, and a
    lower pair that may hide an eigenvalue above the k-th value (`_reach`): a turned top
    eigenvector shows up here, not in the top-k residuals, which stay small."""
    top = bounds > tol * theta[:k].abs().clamp_min(floor)
    kth = theta[k - 1] + tol * theta[k - 1].abs().clamp_min(floor)
    reach = _reach(theta[k:], eps[k:], hidden_weight)
    lower = reach > kth
    if lower.sum() > 1:  # one Krylov direction a step, from the pair that reaches highest
        lower = torch.zeros_like(lower)
        lower[int(torch.argmax(reach))] = True
    return torch.cat([top, lower])


def track(
    matmat: Matmat,
    dim: int,
    k: int = 1,
    *,
    block: Tensor | None = None,
    scout: Tensor | None = None,
    guard: int = 3,
    tol: float = 1e-3,
    max_expand: int = 6,
    max_iter: int = 100,
    audit: bool = False,
    direct: bool = False,
    scout_mix: float = 0.3,
    hidden_weight: float = 0.1,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> TrackResult:
    """The top-k eigenpairs of the symmetric operator `matmat`, started from the previous call's
    `block` and `scout` (None: a cold Lanczos start). `audit` or `direct` run Lanczos warm-started
    from the block instead (labelled "audit", resp. "lanczos"). See the module docstring."""
    if not 1 <= k <= dim:
        raise ValueError(f"k must be in [1, dim={dim}], got {k}")
    generator = generator or torch.Generator().manual_seed(0)
    keep = min(k + guard, dim)
    usable = block is not None and block.shape[0] == dim and block.shape[1] >= k
    if not usable or audit or direct:
        start = block.to(device, dtype) if usable else None
        return _lanczos(matmat, dim, k, keep, tol, max_iter, start, generator, dtype, device,
                        "audit" if usable and audit else "lanczos", n_before=0)

    parts = [block.to(device, dtype)]
    if scout is not None and scout.shape[0] == dim:
        parts.append(scout.to(device, dtype).reshape(dim, 1))
    x = _orthonormalize(torch.cat(parts, dim=1), None)
    ax = matmat(x)
    first = n_matvec = x.shape[1]
    while True:
        theta, y, ay, residual = _rayleigh_ritz(x, ax)
        eps = residual.norm(dim=0).double().cpu()
        floor = torch.finfo(torch.float64).eps ** 0.5 * float(theta.abs().max())
        bounds = eps[:k].clone()  # Bauer-Fike (module docstring, step 3)
        open_ = _open_pairs(theta, eps, bounds, k, tol, floor, hidden_weight)
        if not bool(open_.any()):
            break
        if n_matvec - first >= max_expand or x.shape[1] >= dim:
            return _lanczos(matmat, dim, k, keep, tol, max_iter, y[:, :keep], generator, dtype,
                            device, "lanczos", n_before=n_matvec)
        w = _orthonormalize(residual[:, open_.to(residual.device)], x)
        if w.shape[1] == 0:  # the residuals lie in the space already: Rayleigh-Ritz is exact
            bounds = eps[:k].clone()
            break
        x = torch.cat([x, w], dim=1)
        ax = torch.cat([ax, matmat(w)], dim=1)
        n_matvec += w.shape[1]
    next_block = y[:, :keep]
    return TrackResult(
        eigenvalues=theta[:k], eigenvectors=y[:, :k], residuals=eps[:k], bounds=bounds[:k],
        n_matvec=n_matvec, certified=True, method="tracked" if n_matvec == first else "expanded",
        block=next_block.detach(),
        scout=_next_scout(_reach(theta, eps, hidden_weight), theta, y, ay, k, keep, scout_mix,
                          generator).detach(),
    )


def _rayleigh_ritz(x: Tensor, ax: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Ritz values (descending, float64 CPU), vectors Y = X S, their images A Y and residuals."""
    g = (x.T @ ax).double().cpu()
    theta, s = torch.linalg.eigh((g + g.T) / 2)
    theta, s = theta.flip(0), s.flip(1).to(x)
    y, ay = x @ s, ax @ s
    return theta, y, ay, ay - y * theta.to(y)


def _next_scout(reach: Tensor, theta: Tensor, y: Tensor, ay: Tensor, k: int, keep: int,
                mix: float, generator: torch.Generator) -> Tensor:
    """The next call's scout: a Krylov direction outside the carried block, plus randomness.

    Of the Ritz pairs below the top k, the one that reaches highest (`_reach`) may hide weight
    on a larger eigenvalue; its residual A y - theta y (a product already taken),
    projected off the carried block, is where that weight grows. A random vector of relative
    weight `mix` keeps every direction reachable."""
    carried = y[:, :keep]
    r = _orthonormalize(random_vector(y.shape[0], generator, dtype=y.dtype,
                                      device=y.device).reshape(-1, 1), carried)
    if theta.numel() > k:
        i = k + int(torch.argmax(reach[k:]))
        step = _orthonormalize((ay[:, i] - theta[i].to(y) * y[:, i]).reshape(-1, 1), carried)
        if step.shape[1] and r.shape[1]:
            return _orthonormalize(step + mix * r, carried)[:, 0]
        if step.shape[1]:
            return step[:, 0]
    return r[:, 0]


def _lanczos(matmat: Matmat, dim: int, k: int, keep: int, tol: float, max_iter: int,
             start: Tensor | None, generator: torch.Generator, dtype: torch.dtype,
             device: torch.device | str, method: str, n_before: int) -> TrackResult:
    """Lanczos (warm-started from `start`'s columns when given), as a TrackResult."""
    v0 = None if start is None else warm_start(start, generator)
    result = lanczos(lambda v: matmat(v.reshape(-1, 1))[:, 0], dim, k=k, max_iter=max_iter,
                     tol=tol, v0=v0, dtype=dtype, device=device, generator=generator,
                     extra_vectors=min(keep + 1, dim) - k)
    extra = result.extra_vectors
    vectors = result.eigenvectors if extra is None else torch.cat([result.eigenvectors, extra], 1)
    scout = vectors[:, keep] if vectors.shape[1] > keep else random_vector(
        dim, generator, dtype=dtype, device=device)
    return TrackResult(
        eigenvalues=result.eigenvalues, eigenvectors=result.eigenvectors,
        residuals=result.residuals, bounds=result.residuals.clone(),
        n_matvec=n_before + result.n_matvec, certified=result.converged, method=method,
        block=vectors[:, :keep].detach(), scout=scout.detach(),
    )
