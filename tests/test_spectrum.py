"""Hessian spectrum wrappers (top-k, Hutchinson trace, SLQ density) against dense references."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import dense_hessian
from torch import nn

from dynamics_lab.linalg.spectrum import (
    hessian_spectral_density,
    hessian_trace,
    spectral_density,
    top_hessian_eigenvalues,
)

torch.set_num_threads(1)


def mlp(sizes: list[int], dtype=torch.float64, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1]).to(dtype)


def saddle_loss(out, y):
    """MSE minus a large output-energy term: the most negative Hessian eigenvalue dominates."""
    return F.mse_loss(out, y) - 5.0 * (out**2).mean()


def regression(n: int = 48, d_in: int = 4, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d_in, generator=g).double(), torch.randn(n, 1, generator=g).double()


def classification(n: int = 48, d_in: int = 5, classes: int = 4, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d_in, generator=g).double(), torch.randint(0, classes, (n,), generator=g)


CASES = {
    "regression": (lambda: mlp([4, 20, 20, 1]), F.mse_loss, regression),
    "classifier": (lambda: mlp([5, 24, 4]), F.cross_entropy, classification),
    "saddle": (lambda: mlp([4, 20, 20, 1]), saddle_loss, regression),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    make_model, loss_fn, make_batch = CASES[request.param]
    model, batch = make_model(), make_batch()
    h = dense_hessian(model, loss_fn, batch)
    return request.param, model, loss_fn, batch, h, torch.linalg.eigh(h)


@pytest.mark.parametrize("k", [1, 3])
def test_top_k_matches_dense(case, k):
    _, model, loss_fn, batch, h, (evals, _) = case
    res = top_hessian_eigenvalues(model, loss_fn, batch, k=k, tol=1e-8, max_iter=400)
    assert res.converged
    torch.testing.assert_close(res.eigenvalues, evals.flip(0)[:k], rtol=1e-5, atol=0)
    v = res.eigenvectors
    explicit = (h @ v - v * res.eigenvalues).norm(dim=0)
    torch.testing.assert_close(res.residuals, explicit, rtol=1e-3, atol=1e-12)


@pytest.mark.parametrize("case", ["saddle"], indirect=True)
def test_saddle_reports_largest_algebraic(case):
    _, model, loss_fn, batch, _, (evals, _) = case
    assert -evals[0] > 5 * evals[-1] > 0, "fixture should have a dominant negative eigenvalue"
    res = top_hessian_eigenvalues(model, loss_fn, batch, k=1, tol=1e-8, max_iter=400)
    assert res.eigenvalues[0] > 0
    torch.testing.assert_close(res.eigenvalues[0], evals[-1], rtol=1e-6, atol=0)


def test_chunked_and_loose_tolerance(case):
    _, model, loss_fn, batch, _, (evals, _) = case
    res = top_hessian_eigenvalues(model, loss_fn, batch, k=1, tol=1e-3, chunk_size=10)
    assert res.converged and res.residuals[0] <= 1e-3 * res.eigenvalues[0].abs()
    # A Ritz value is a Rayleigh quotient, so it never overshoots; residual r bounds the error.
    assert evals[-1] - res.residuals[0] <= res.eigenvalues[0] <= evals[-1] + 1e-10


def test_warm_start_from_top_eigenvector(case):
    _, model, loss_fn, batch, _, (evals, evecs) = case
    res = top_hessian_eigenvalues(model, loss_fn, batch, k=1, tol=1e-6, v0=evecs[:, -1])
    assert res.converged and res.n_matvec <= 2
    torch.testing.assert_close(res.eigenvalues[0], evals[-1])


def test_hutchinson_trace_within_three_stderr(case):
    _, model, loss_fn, batch, h, _ = case
    est = hessian_trace(
        model, loss_fn, batch, n_samples=300, generator=torch.Generator().manual_seed(0)
    )
    assert est.n_samples == 300 and est.stderr > 0
    assert abs(est.value - h.trace().item()) <= 3 * est.stderr


def test_slq_on_explicit_diagonal():
    eigs = torch.cat([torch.linspace(0.0, 1.0, 900), torch.linspace(8.0, 10.0, 100)]).double()
    dens = spectral_density(
        lambda v: eigs * v, 1000, n_draws=8, n_iter=40, generator=torch.Generator().manual_seed(0)
    )
    dx = (dens.grid[1] - dens.grid[0]).item()
    assert dens.nodes.shape == dens.weights.shape == (8, 40) and dens.grid.shape == (500,)
    assert math.isclose(dens.density.sum().item() * dx, 1.0, rel_tol=1e-9)
    assert (dens.density >= 0).all()
    mean = (dens.grid * dens.density).sum().item() * dx
    assert math.isclose(mean, eigs.mean().item(), rel_tol=0.05)
    assert dens.nodes.min() >= -1e-9 and dens.nodes.max() <= 10.0 + 1e-9
    torch.testing.assert_close(dens.weights.sum(dim=1), torch.ones(8, dtype=torch.float64))
    assert dens.nodes.max().item() == pytest.approx(10.0, rel=1e-4)
    # Two well separated bulks: the mass near [8, 10] is about 10%.
    assert 0.05 < (dens.density[dens.grid > 5].sum() * dx).item() < 0.15


def test_slq_stops_at_invariant_subspace():
    eigs = torch.tensor([1.0, 1.0, 2.0, 2.0, 3.0] * 4).double()
    dens = spectral_density(lambda v: eigs * v, 20, n_draws=2, n_iter=10)
    assert dens.nodes.shape == (2, 3)
    torch.testing.assert_close(dens.nodes[0], torch.tensor([3.0, 2.0, 1.0]).double())


def test_hessian_density_nodes_within_spectrum(case):
    _, model, loss_fn, batch, _, (evals, _) = case
    dens = hessian_spectral_density(model, loss_fn, batch, n_draws=3, n_iter=30, grid_size=200)
    dx = (dens.grid[1] - dens.grid[0]).item()
    assert math.isclose(dens.density.sum().item() * dx, 1.0, rel_tol=1e-9)
    slack = 1e-8 * evals.abs().max()
    assert evals[0] - slack <= dens.nodes.min() and dens.nodes.max() <= evals[-1] + slack


@pytest.mark.parametrize("training", [True, False])
def test_measurements_leave_model_untouched(training):
    model, batch = mlp([4, 12, 1]), regression(20)
    model.train(training)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    grads = {n: (p.grad, p.grad.clone()) for n, p in model.named_parameters()}
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    rng = torch.random.get_rng_state()
    top_hessian_eigenvalues(model, F.mse_loss, batch, k=2)
    hessian_trace(model, F.mse_loss, batch, n_samples=4)
    hessian_spectral_density(model, F.mse_loss, batch, n_draws=2, n_iter=10, chunk_size=7)
    assert model.training is training
    assert torch.equal(torch.random.get_rng_state(), rng)
    for n, p in model.named_parameters():
        assert p.grad is grads[n][0] and torch.equal(p.grad, grads[n][1])
        assert torch.equal(p, params[n])


def test_float32_agrees_with_float64():
    model64, batch = mlp([4, 20, 20, 1]), regression()
    model32 = mlp([4, 20, 20, 1], dtype=torch.float32)
    batch32 = tuple(t.float() for t in batch)
    top64 = top_hessian_eigenvalues(model64, F.mse_loss, batch, tol=1e-8, max_iter=200)
    top32 = top_hessian_eigenvalues(model32, F.mse_loss, batch32, tol=1e-5, max_iter=200)
    assert top32.eigenvectors.dtype == torch.float32
    torch.testing.assert_close(top32.eigenvalues, top64.eigenvalues, rtol=1e-4, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_smoke(dtype):
    model, batch = mlp([4, 20, 20, 1], dtype=dtype), regression()
    batch = tuple(t.to(dtype) for t in batch)
    ref = top_hessian_eigenvalues(model, F.mse_loss, batch, k=2, tol=1e-6)
    model.cuda()
    batch = tuple(t.cuda() for t in batch)
    res = top_hessian_eigenvalues(model, F.mse_loss, batch, k=2, tol=1e-6)
    assert res.eigenvectors.is_cuda and res.converged
    torch.testing.assert_close(res.eigenvalues, ref.eigenvalues, rtol=1e-4, atol=0)
    est = hessian_trace(model, F.mse_loss, batch, n_samples=8)
    assert math.isfinite(est.value)
    dens = hessian_spectral_density(model, F.mse_loss, batch, n_draws=2, n_iter=20)
    assert torch.isfinite(dens.density).all()
