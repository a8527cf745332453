"""Lanczos against explicit symmetric matrices with known spectra."""

import pytest
import torch

from dynamics_lab.linalg.lanczos import lanczos, tridiagonalize

torch.set_num_threads(1)


def rotated(eigenvalues: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Q diag(eigenvalues) Q^T for a random orthogonal Q: a dense matrix with a known spectrum."""
    g = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=eigenvalues.dtype))
    return (q * eigenvalues) @ q.T


class Counted:
    """A matvec that counts its calls."""

    def __init__(self, matrix: torch.Tensor):
        self.matrix, self.calls = matrix, 0

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.matrix @ v


def spread_spectrum(n: int = 150) -> torch.Tensor:
    return torch.cat([torch.tensor([9.0, 7.5, 6.0]), torch.linspace(0.0, 5.0, n - 3)]).double()


@pytest.mark.parametrize("k", [1, 3])
def test_top_k_matches_dense(k):
    a = rotated(spread_spectrum())
    res = lanczos(lambda v: a @ v, a.shape[0], k=k, tol=1e-10, max_iter=150)
    expected = torch.linalg.eigvalsh(a).flip(0)[:k]
    assert res.converged
    torch.testing.assert_close(res.eigenvalues, expected, rtol=1e-9, atol=0)
    assert res.eigenvectors.shape == (a.shape[0], k)
    torch.testing.assert_close(res.eigenvectors.norm(dim=0), torch.ones(k, dtype=torch.float64))


def test_largest_algebraic_beats_dominant_negative():
    eigs = torch.cat([torch.tensor([-100.0, -50.0]), torch.linspace(-1.0, 2.0, 98)]).double()
    a = rotated(eigs)
    res = lanczos(lambda v: a @ v, 100, k=3, tol=1e-10)
    assert res.converged
    torch.testing.assert_close(res.eigenvalues, eigs.sort(descending=True).values[:3])
    assert (res.eigenvalues > 0).all()


def test_residuals_are_true_residuals():
    a = rotated(spread_spectrum())
    res = lanczos(lambda v: a @ v, a.shape[0], k=3, tol=1e-3)
    v = res.eigenvectors
    explicit = (a @ v - v * res.eigenvalues).norm(dim=0)
    assert (res.residuals > 1e-12).all(), "loose tol should leave measurable residuals"
    torch.testing.assert_close(res.residuals, explicit, rtol=1e-6, atol=1e-12)
    assert (res.residuals <= 1e-3 * res.eigenvalues.abs()).all()


def test_n_matvec_counts_every_call():
    a = rotated(spread_spectrum())
    matvec = Counted(a)
    res = lanczos(matvec, a.shape[0], k=2, tol=1e-6)
    assert res.n_matvec == matvec.calls > 0


def test_not_converged_when_out_of_iterations():
    a = rotated(torch.linspace(1.0, 2.0, 100).double())
    matvec = Counted(a)
    res = lanczos(matvec, 100, k=1, max_iter=2, tol=1e-8)
    assert not res.converged
    assert res.n_matvec == matvec.calls == 2
    assert res.residuals[0] > 1e-8 * res.eigenvalues[0]


def test_warm_start_from_eigenvector_is_immediate():
    a = rotated(spread_spectrum())
    top = torch.linalg.eigh(a).eigenvectors[:, -1]
    res = lanczos(Counted(a), a.shape[0], k=1, tol=1e-8, v0=top)
    assert res.converged and res.n_matvec <= 2
    torch.testing.assert_close(res.eigenvalues[0].item(), 9.0)


def test_max_iter_is_capped_at_dim():
    a = rotated(torch.tensor([4.0, 1.0, -2.0, 0.5, 3.0]).double())
    res = lanczos(lambda v: a @ v, 5, k=5, max_iter=100, tol=1e-10)
    assert res.n_matvec == 5 and res.converged
    torch.testing.assert_close(res.eigenvalues, torch.tensor([4.0, 3.0, 1.0, 0.5, -2.0]).double())


def test_clustered_top_eigenvalues_are_resolved():
    eigs = torch.cat([torch.tensor([10.0, 9.999, 9.998]), torch.linspace(0.0, 5.0, 97)]).double()
    a = rotated(eigs)
    res = lanczos(lambda v: a @ v, 100, k=3, tol=1e-12)
    torch.testing.assert_close(res.eigenvalues, eigs[:3], rtol=1e-10, atol=0)


def test_repeated_eigenvalues_found_after_invariant_subspace():
    eigs = torch.tensor([3.0, 3.0, 2.0, 2.0, 2.0, 1.0]).double()
    a = torch.diag(eigs)
    res = lanczos(lambda v: a @ v, 6, k=3, tol=1e-10)
    assert res.converged
    torch.testing.assert_close(res.eigenvalues, torch.tensor([3.0, 3.0, 2.0]).double())
    v = res.eigenvectors
    torch.testing.assert_close(v.T @ v, torch.eye(3, dtype=torch.float64), atol=1e-10, rtol=0)


def test_degenerate_top_eigenvalue_in_large_matrix():
    eigs = torch.cat([torch.full((3,), 5.0), torch.linspace(-3.0, 4.0, 47)]).double()
    a = rotated(eigs)
    res = lanczos(lambda v: a @ v, 50, k=1, tol=1e-10)
    assert res.converged
    torch.testing.assert_close(res.eigenvalues[0].item(), 5.0)


def test_zero_operator_converges_at_once():
    res = lanczos(lambda v: torch.zeros_like(v), 30, k=1, tol=1e-6)
    assert res.converged and res.n_matvec == 1 and res.eigenvalues[0] == 0


def test_float32_matches_float64():
    a64 = rotated(spread_spectrum())
    a32 = a64.float()
    res32 = lanczos(lambda v: a32 @ v, 150, k=2, tol=1e-5, dtype=torch.float32)
    res64 = lanczos(lambda v: a64 @ v, 150, k=2, tol=1e-10)
    assert res32.eigenvectors.dtype == torch.float32
    torch.testing.assert_close(res32.eigenvalues, res64.eigenvalues, rtol=1e-4, atol=0)


def test_global_rng_untouched_and_seeded_by_default():
    a = rotated(spread_spectrum())
    state = torch.random.get_rng_state()
    first = lanczos(lambda v: a @ v, 150, k=1, max_iter=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    second = lanczos(lambda v: a @ v, 150, k=1, max_iter=5)
    assert torch.equal(first.eigenvalues, second.eigenvalues)
    other = lanczos(
        lambda v: a @ v, 150, k=1, max_iter=5, generator=torch.Generator().manual_seed(1)
    )
    assert not torch.equal(first.eigenvalues, other.eigenvalues)


def test_tridiagonalization_is_a_lanczos_factorization():
    a = rotated(spread_spectrum())
    g = torch.Generator().manual_seed(3)
    tri = tridiagonalize(lambda v: a @ v, torch.randn(150, generator=g, dtype=torch.float64), 20)
    q = tri.basis
    off = tri.betas[:-1]
    t = torch.diag(tri.alphas) + torch.diag(off, 1) + torch.diag(off, -1)
    assert q.shape == (20, 150) and tri.n_matvec == 20
    torch.testing.assert_close(q @ q.T, torch.eye(20, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(q @ a @ q.T, t, atol=1e-10, rtol=0)


def test_invalid_arguments():
    a = torch.eye(4, dtype=torch.float64)
    with pytest.raises(ValueError):
        lanczos(lambda v: a @ v, 4, k=5)
    with pytest.raises(ValueError):
        lanczos(lambda v: a @ v, 4, k=3, max_iter=2)
    with pytest.raises(ValueError):
        lanczos(lambda v: a @ v, 4, v0=torch.zeros(4, dtype=torch.float64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_smoke():
    a = rotated(spread_spectrum()).cuda()
    res = lanczos(lambda v: a @ v, 150, k=2, tol=1e-8, device="cuda")
    assert res.eigenvectors.is_cuda and res.converged
    torch.testing.assert_close(res.eigenvalues, torch.tensor([9.0, 7.5]).double())


def test_extra_vectors_are_the_next_ritz_vectors():
    a = rotated(spread_spectrum())
    res = lanczos(lambda v: a @ v, a.shape[0], k=1, tol=1e-12, extra_vectors=2)
    true = torch.linalg.eigh(a).eigenvectors.flip(1)  # columns by descending eigenvalue
    assert res.eigenvectors.shape == (150, 1) and res.extra_vectors.shape == (150, 2)
    overlaps = (true[:, 1:3].T @ res.extra_vectors).abs().diagonal()
    torch.testing.assert_close(overlaps, torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-6)
    assert lanczos(lambda v: a @ v, 150, k=1).extra_vectors is None
