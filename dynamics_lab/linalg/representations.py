"""Representation and weight metrics: effective rank, participation ratio, CKA, Fourier structure.

Pure tensor math on whatever device the input lives on. Half-precision inputs are promoted to
float32 because these metrics sum many squared terms.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "effective_rank",
    "fourier_metrics",
    "linear_cka",
    "participation_ratio",
    "real_fourier_basis",
    "relevant_mass",
]


def _as_float(t: Tensor) -> Tensor:
    """Detached floating tensor, at least float32."""
    t = t.detach()
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def effective_rank(M_or_singular_values: Tensor) -> Tensor:
    """Roy & Vetterli (2007) effective rank exp(H(p)), p_i = s_i / sum s (1-D input: s itself)."""
    t = _as_float(M_or_singular_values)
    s = t.abs() if t.ndim == 1 else torch.linalg.svdvals(t.reshape(t.shape[0], -1))
    return torch.exp(torch.special.entr(s / s.sum()).sum())


def participation_ratio(M: Tensor, center: bool = True) -> Tensor:
    """(sum lam)^2 / sum lam^2 with lam = s^2 of M, the covariance spectrum when rows are examples.

    For a representation (n examples x d features) keep center=True: columns are centered so lam
    are the covariance eigenvalues (the 1/(n-1) factor cancels). For a weight matrix pass
    center=False: lam are then the squared singular values of the weights themselves.
    """
    M = _as_float(M).reshape(M.shape[0], -1)
    if center:
        M = M - M.mean(0, keepdim=True)
    lam = torch.linalg.svdvals(M) ** 2
    return lam.sum() ** 2 / (lam**2).sum()


def linear_cka(X: Tensor, Y: Tensor) -> Tensor:
    """Linear CKA (Kornblith et al. 2019) of two centered representations of the same n examples."""
    X = _as_float(X).reshape(X.shape[0], -1)
    Y = _as_float(Y).reshape(Y.shape[0], -1).to(X.dtype)
    X = X - X.mean(0, keepdim=True)
    Y = Y - Y.mean(0, keepdim=True)
    if X.shape[0] < min(X.shape[1], Y.shape[1]):
        # Same value from n x n Gram matrices, cheaper when features outnumber examples.
        Kx, Ky = X @ X.T, Y @ Y.T
        return (Kx * Ky).sum() / (torch.linalg.matrix_norm(Kx) * torch.linalg.matrix_norm(Ky))
    numerator = torch.linalg.matrix_norm(Y.T @ X) ** 2
    return numerator / (torch.linalg.matrix_norm(X.T @ X) * torch.linalg.matrix_norm(Y.T @ Y))


def real_fourier_basis(p: int, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """Orthonormal real Fourier basis of Z_p as rows: constant, then cos/sin for k = 1..p//2."""
    t = torch.arange(p, dtype=dtype, device=device)
    rows = [torch.full((p,), 1 / math.sqrt(p), dtype=dtype, device=device)]
    for k in range(1, p // 2 + 1):
        angle = 2 * math.pi * k * t / p
        if 2 * k == p:  # the Nyquist frequency of even p has a cosine only
            rows.append(torch.cos(angle) / math.sqrt(p))
        else:
            rows += [torch.cos(angle) * math.sqrt(2 / p), torch.sin(angle) * math.sqrt(2 / p)]
    return torch.stack(rows)


def _frequency_power(W: Tensor, p: int) -> Tensor:
    """Per-frequency, per-column power (p//2 + 1, d) of W's first p rows, cos and sin combined."""
    W = _as_float(W)[:p].reshape(p, -1)
    coeff = real_fourier_basis(p, W.dtype, W.device) @ W
    power = coeff**2
    # Rows (1, 2) are (cos, sin) of k = 1, (3, 4) of k = 2, ...; an even p ends on a Nyquist row.
    paired = power[1 : 1 + 2 * ((p - 1) // 2)].reshape(-1, 2, power.shape[1]).sum(1)
    return torch.cat([power[:1], paired, power[1 + paired.shape[0] * 2 :]])


def fourier_metrics(
    W: Tensor, p: int, top_k: int = 5, mass_threshold: float = 0.9
) -> dict[str, Tensor | int]:
    """Fourier sparsity of a modular-arithmetic embedding W (rows: tokens 0..p-1, extras ignored).

    Returns `power` (k = 0..p//2, normalized to sum 1) and `constant_fraction` (= power[0]). The
    other summaries use only the non-constant power q_k = power_k / sum_{k>=1} power_k, because the
    constant mode carries no modular structure: `ipr` = sum q^2 (1 for one frequency, 1/m for m
    equal ones), `top_k_mass` (q mass in the top_k frequencies), `n_key_frequencies` (fewest
    frequencies holding >= mass_threshold of q), `neuron_purity` (mean over columns of the share
    of a column's non-constant power in its best frequency; 0 for columns with none) and
    `neuron_purity_per_neuron`.
    """
    per_neuron = _frequency_power(W, p)
    power = per_neuron.sum(1)
    power = power / power.sum().clamp_min(torch.finfo(power.dtype).tiny)
    q = power[1:] / power[1:].sum().clamp_min(torch.finfo(power.dtype).tiny)
    ranked = q.sort(descending=True).values
    # A rounding tolerance so that e.g. two exactly equal halves reach a threshold of 1.0.
    short_of_threshold = ranked.cumsum(0) < mass_threshold - 1e-9
    n_key = min(int(short_of_threshold.sum()) + 1, q.numel())
    nonconstant = per_neuron[1:]
    purity = nonconstant.max(0).values / nonconstant.sum(0).clamp_min(torch.finfo(power.dtype).tiny)
    return {
        "power": power,
        "constant_fraction": power[0],
        "ipr": (q**2).sum(),
        "top_k_mass": ranked[:top_k].sum(),
        "n_key_frequencies": n_key,
        "neuron_purity": purity.mean(),
        "neuron_purity_per_neuron": purity,
    }


def relevant_mass(W: Tensor, relevant_idx) -> Tensor:
    """Per neuron (row of a hidden x input weight), its squared-weight share on relevant inputs."""
    W2 = _as_float(W) ** 2
    total = W2.sum(1)
    return W2[:, relevant_idx].sum(1) / total.clamp_min(torch.finfo(W2.dtype).tiny)
