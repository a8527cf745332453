"""Representation metrics on hand-built matrices with known answers."""

import math

import pytest
import torch

from dynamics_lab.linalg.representations import (
    effective_rank,
    fourier_metrics,
    linear_cka,
    participation_ratio,
    real_fourier_basis,
    relevant_mass,
)

torch.set_num_threads(1)
DOUBLE = torch.float64


def orthonormal_columns(n: int, k: int, seed: int, orthogonal_to_ones: bool = False):
    """n x k matrix with orthonormal columns (optionally also orthogonal to the all-ones vector)."""
    A = torch.randn(n, k + 1, generator=torch.Generator().manual_seed(seed), dtype=DOUBLE)
    if orthogonal_to_ones:
        A[:, 0] = 1.0
        return torch.linalg.qr(A).Q[:, 1:]
    return torch.linalg.qr(A).Q[:, :k]


def equal_spectrum_matrix(rank: int, centered: bool = False) -> torch.Tensor:
    """A 12 x 9 matrix of the given rank whose nonzero singular values all equal 3."""
    U = orthonormal_columns(12, rank, seed=0, orthogonal_to_ones=centered)
    V = orthonormal_columns(9, rank, seed=1)
    return 3.0 * U @ V.T


def scalar(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=DOUBLE)


@pytest.mark.parametrize("rank", [1, 3, 5])
def test_effective_rank_of_equal_singular_values(rank):
    torch.testing.assert_close(effective_rank(equal_spectrum_matrix(rank)), scalar(rank))
    s = torch.tensor([2.0, 2.0, 2.0, 0.0], dtype=DOUBLE)
    torch.testing.assert_close(effective_rank(s), scalar(3.0))


@pytest.mark.parametrize("rank", [1, 3, 5])
def test_participation_ratio_of_equal_spectrum(rank):
    weights = equal_spectrum_matrix(rank)
    torch.testing.assert_close(participation_ratio(weights, center=False), scalar(rank))
    # Columns already centered, so the covariance spectrum is the same flat one.
    representation = equal_spectrum_matrix(rank, centered=True)
    torch.testing.assert_close(participation_ratio(representation), scalar(rank))


def test_participation_ratio_centering_removes_the_mean():
    offset = torch.ones(12, 1, dtype=DOUBLE) @ torch.randn(1, 9, dtype=DOUBLE)
    representation = equal_spectrum_matrix(3, centered=True) + 5 * offset
    torch.testing.assert_close(participation_ratio(representation), scalar(3.0))
    assert participation_ratio(representation, center=False) < 2.0


def test_linear_cka_invariances():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(50, 6, generator=gen, dtype=DOUBLE)
    Q = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=DOUBLE)).Q
    Y = torch.randn(50, 4, generator=gen, dtype=DOUBLE)
    torch.testing.assert_close(linear_cka(X, X @ Q), scalar(1.0))
    torch.testing.assert_close(linear_cka(X, 7.0 * X @ Q + 3.0), scalar(1.0))
    torch.testing.assert_close(linear_cka(0.1 * X, Y), linear_cka(X, Y))
    torch.testing.assert_close(linear_cka(X, Y), linear_cka(Y, X))


def test_linear_cka_of_independent_representations_is_small():
    gen = torch.Generator().manual_seed(1)
    X, Y = torch.randn(2, 500, 5, generator=gen, dtype=DOUBLE)
    assert linear_cka(X, Y) < 0.05


def test_linear_cka_gram_and_feature_forms_agree():
    gen = torch.Generator().manual_seed(2)
    X = torch.randn(8, 20, generator=gen, dtype=DOUBLE)  # n < d: Gram form
    Y = torch.randn(8, 3, 5, generator=gen, dtype=DOUBLE)  # extra dims flattened
    Xc, Yc = X - X.mean(0), Y.reshape(8, -1) - Y.reshape(8, -1).mean(0)
    norm = torch.linalg.matrix_norm
    expected = norm(Yc.T @ Xc) ** 2 / (norm(Xc.T @ Xc) * norm(Yc.T @ Yc))
    torch.testing.assert_close(linear_cka(X, Y), expected)
    assert linear_cka(X.float(), Y.float()).dtype == torch.float32


@pytest.mark.parametrize("p", [12, 13])
def test_real_fourier_basis_is_orthonormal(p):
    B = real_fourier_basis(p)
    assert B.shape == (p, p)
    torch.testing.assert_close(B @ B.T, torch.eye(p, dtype=DOUBLE))


def waves(p: int, specs) -> torch.Tensor:
    """Columns amplitude * cos(2 pi k t / p + phase) for (k, amplitude, phase) in specs."""
    t = torch.arange(p, dtype=DOUBLE)
    return torch.stack([a * torch.cos(2 * math.pi * k * t / p + ph) for k, a, ph in specs], 1)


def test_single_frequency_embedding_is_pure():
    p, k = 13, 4
    W = waves(p, [(k, 1.0, 0.0), (k, 2.0, 0.7), (k, 0.5, -1.3)])
    m = fourier_metrics(W, p, top_k=1)
    assert m["power"].shape == (p // 2 + 1,)
    torch.testing.assert_close(m["power"][k], scalar(1.0))
    torch.testing.assert_close(m["ipr"], scalar(1.0))
    torch.testing.assert_close(m["top_k_mass"], scalar(1.0))
    assert m["n_key_frequencies"] == 1
    torch.testing.assert_close(m["neuron_purity"], scalar(1.0))
    torch.testing.assert_close(m["neuron_purity_per_neuron"], torch.ones(3, dtype=DOUBLE))


def test_two_equal_frequencies():
    p = 13
    separate = waves(p, [(2, 1.0, 0.0), (5, 1.0, math.pi / 2)])
    m = fourier_metrics(separate, p, top_k=1)
    torch.testing.assert_close(m["ipr"], scalar(0.5))
    torch.testing.assert_close(m["top_k_mass"], scalar(0.5))
    assert m["n_key_frequencies"] == 2
    torch.testing.assert_close(m["neuron_purity"], scalar(1.0))
    mixed = separate.sum(1, keepdim=True)  # one neuron carrying both frequencies
    m = fourier_metrics(mixed, p)
    torch.testing.assert_close(m["ipr"], scalar(0.5))
    torch.testing.assert_close(m["neuron_purity"], scalar(0.5))


def test_constant_component_and_extra_rows():
    p = 11
    W = waves(p, [(3, 1.0, 0.2)]) + 1.0
    W = torch.cat([W, torch.full((2, 1), 100.0, dtype=DOUBLE)])  # e.g. "=" token rows
    m = fourier_metrics(W, p)
    torch.testing.assert_close(m["power"].sum(), scalar(1.0))
    # Constant power is p * 1^2, the k = 3 wave carries p / 2.
    torch.testing.assert_close(m["constant_fraction"], scalar(2 / 3))
    torch.testing.assert_close(m["ipr"], scalar(1.0))
    assert m["n_key_frequencies"] == 1


def test_nyquist_frequency_for_even_p():
    p = 12
    W = torch.tensor([(-1.0) ** t for t in range(p)], dtype=DOUBLE)[:, None]
    m = fourier_metrics(W, p)
    torch.testing.assert_close(m["power"][-1], scalar(1.0))
    assert m["n_key_frequencies"] == 1


def test_relevant_mass():
    W = torch.zeros(4, 6, dtype=DOUBLE)
    W[:, [1, 4]] = torch.randn(4, 2, dtype=DOUBLE)
    torch.testing.assert_close(relevant_mass(W, [1, 4]), torch.ones(4, dtype=DOUBLE))
    W = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(relevant_mass(W, torch.tensor([0])), torch.tensor([0.25, 1.0, 0.0]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    X = torch.randn(40, 6, dtype=DOUBLE)
    Y = torch.randn(40, 3, dtype=DOUBLE)
    W = waves(13, [(2, 1.0, 0.0), (5, 2.0, 0.3)])
    for fn, args in [
        (effective_rank, (X,)),
        (participation_ratio, (X,)),
        (linear_cka, (X, Y)),
        (relevant_mass, (X, [0, 2])),
    ]:
        out = fn(*(a.cuda() if torch.is_tensor(a) else a for a in args))
        assert out.is_cuda
        torch.testing.assert_close(out.cpu(), fn(*args))
    gpu, cpu = fourier_metrics(W.cuda(), 13), fourier_metrics(W, 13)
    torch.testing.assert_close(gpu["power"].cpu(), cpu["power"])
    assert gpu["n_key_frequencies"] == cpu["n_key_frequencies"]
