"""Empirical NTK and its estimators against explicit per-example Jacobians on tiny models."""

import pytest
import torch
from torch import nn

from dynamics_lab.linalg import ntk
from dynamics_lab.linalg.ntk import (
    empirical_ntk,
    frobenius_norm_estimate,
    kernel_alignment,
    kernel_distance,
    label_projection_norm,
    matrix_free_alignment,
)

torch.set_num_threads(1)


def tanh_mlp(out_dim: int = 3, in_dim: int = 4, hidden: int = 6, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, out_dim)).double()


def inputs(n: int = 5, in_dim: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(
        n, in_dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def explicit_jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(n, O, P) Jacobian of every output of every example w.r.t. trainable params, by autograd."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for xi in x:
        out = model(xi.unsqueeze(0)).reshape(-1)
        grads = [torch.autograd.grad(out[o], params, retain_graph=True) for o in range(out.numel())]
        rows.append(torch.stack([torch.cat([g.reshape(-1) for g in gs]) for gs in grads]))
    return torch.stack(rows)


def centering(n: int) -> torch.Tensor:
    return torch.eye(n, dtype=torch.float64) - torch.full((n, n), 1.0 / n, dtype=torch.float64)


# --- empirical_ntk ---------------------------------------------------------------------------


def test_trace_and_full_kernels_match_explicit_jacobians():
    model, x = tanh_mlp(), inputs()
    J = explicit_jacobian(model, x)
    rows = J.reshape(-1, J.shape[2])
    expected_trace = torch.einsum("iop,jop->ij", J, J)
    expected_full = rows @ rows.T
    torch.testing.assert_close(empirical_ntk(model, x, "trace"), expected_trace)
    torch.testing.assert_close(empirical_ntk(model, x, "full"), expected_full)


def test_scalar_kernels_match_explicit_jacobians():
    model, x = tanh_mlp(), inputs()
    J = explicit_jacobian(model, x)
    direction = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    J_dir = torch.einsum("iop,o->ip", J, direction)
    torch.testing.assert_close(
        empirical_ntk(model, x, "scalar", direction=direction), J_dir @ J_dir.T
    )
    labels = torch.tensor([0, 2, 1, 2, 0])
    J_lab = J[torch.arange(len(labels)), labels]
    torch.testing.assert_close(empirical_ntk(model, x, "scalar", labels=labels), J_lab @ J_lab.T)


def test_scalar_output_model_needs_no_direction():
    model, x = tanh_mlp(out_dim=1), inputs()
    J = explicit_jacobian(model, x)[:, 0]
    torch.testing.assert_close(empirical_ntk(model, x, "scalar"), J @ J.T)
    torch.testing.assert_close(empirical_ntk(model, x, "trace"), J @ J.T)


@pytest.mark.parametrize("output", ["scalar", "trace", "full"])
@pytest.mark.parametrize("chunk_size", [1, 2, 3])
def test_chunked_equals_unchunked(output, chunk_size):
    model, x = tanh_mlp(), inputs(n=7)
    kwargs = {"labels": torch.tensor([0, 1, 2, 0, 1, 2, 0])} if output == "scalar" else {}
    whole = empirical_ntk(model, x, output, chunk_size=len(x), **kwargs)
    torch.testing.assert_close(
        empirical_ntk(model, x, output, chunk_size=chunk_size, **kwargs), whole
    )


@pytest.mark.parametrize("budget_rows", [1, 2, 5, 100])
def test_memory_budget_streams_output_groups(monkeypatch, budget_rows):
    model, x = tanh_mlp(), inputs(n=7)
    J = explicit_jacobian(model, x)
    row_bytes = J.shape[2] * J.element_size()
    monkeypatch.setattr(ntk, "JACOBIAN_CHUNK_BYTES", budget_rows * row_bytes)
    torch.testing.assert_close(empirical_ntk(model, x, "trace"), torch.einsum("iop,jop->ij", J, J))
    full = J.reshape(-1, J.shape[2])
    torch.testing.assert_close(empirical_ntk(model, x, "full"), full @ full.T)
    x2 = inputs(n=3, seed=5)
    J2 = explicit_jacobian(model, x2)
    K = empirical_ntk(model, x, "trace", x2=x2, chunk_size=2)
    torch.testing.assert_close(K, torch.einsum("iop,jop->ij", J, J2))


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_cross_kernel(chunk_size):
    model, x, x2 = tanh_mlp(), inputs(n=5), inputs(n=3, seed=7)
    J1, J2 = explicit_jacobian(model, x), explicit_jacobian(model, x2)
    K = empirical_ntk(model, x, "trace", x2=x2, chunk_size=chunk_size)
    torch.testing.assert_close(K, torch.einsum("iop,jop->ij", J1, J2))
    K_full = empirical_ntk(model, x, "full", x2=x2, chunk_size=chunk_size)
    torch.testing.assert_close(K_full, J1.reshape(15, -1) @ J2.reshape(9, -1).T)
    labels, labels2 = torch.tensor([0, 1, 2, 1, 0]), torch.tensor([2, 2, 1])
    K_lab = empirical_ntk(
        model, x, "scalar", labels=labels, x2=x2, labels2=labels2, chunk_size=chunk_size
    )
    torch.testing.assert_close(K_lab, J1[torch.arange(5), labels] @ J2[torch.arange(3), labels2].T)


def test_kernel_uses_trainable_parameters_only():
    model, x = tanh_mlp(), inputs()
    model[0].weight.requires_grad_(False)
    J = explicit_jacobian(model, x)
    torch.testing.assert_close(empirical_ntk(model, x, "trace"), torch.einsum("iop,jop->ij", J, J))


def test_token_inputs_and_float32():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(7, 4), nn.Flatten(), nn.Linear(8, 7))
    x = torch.randint(0, 7, (6, 2))
    K = empirical_ntk(model, x, "scalar", labels=(x.sum(1) % 7))
    assert K.shape == (6, 6) and K.dtype == torch.float32
    torch.testing.assert_close(K, K.T)
    assert torch.linalg.eigvalsh(K.double()).min() > -1e-4


def test_bad_arguments_name_the_choices():
    model, x = tanh_mlp(), inputs()
    with pytest.raises(ValueError, match="scalar, trace, full"):
        empirical_ntk(model, x, "diag")
    with pytest.raises(ValueError, match="needs direction= or labels="):
        empirical_ntk(model, x, "scalar")
    with pytest.raises(ValueError, match="labels2"):
        empirical_ntk(model, x, "scalar", labels=torch.zeros(5, dtype=torch.long), x2=x)
    with pytest.raises(ValueError, match="2 entries"):
        empirical_ntk(model, x, "scalar", direction=torch.ones(2))


def test_no_side_effects_on_grad_mode_or_params():
    model, x = tanh_mlp(), inputs()
    model.train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.25)
    before = [p.detach().clone() for p in model.parameters()]
    Y = torch.randn(5, 3, dtype=torch.float64)
    empirical_ntk(model, x, "full", chunk_size=2)
    empirical_ntk(model, x, "scalar", labels=torch.tensor([0, 1, 2, 0, 1]))
    label_projection_norm(model, x, Y, centered=True)
    frobenius_norm_estimate(model, x, n_probes=2)
    matrix_free_alignment(model, x, Y, n_probes=2)
    assert model.training
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.equal(p.detach(), b)
        assert torch.equal(p.grad, torch.full_like(p, 0.25))
    model.eval()
    with torch.no_grad():  # torch.func transforms ignore an outer no_grad
        torch.testing.assert_close(empirical_ntk(model, x), empirical_ntk(model, x, chunk_size=2))
    assert not model.training


# --- kernel_alignment / kernel_distance ------------------------------------------------------


def test_alignment_of_target_kernel_is_one():
    Y = nn.functional.one_hot(torch.tensor([0, 1, 2, 1, 0, 2, 2]), 3).double()
    for centered in (True, False):
        torch.testing.assert_close(
            kernel_alignment(Y @ Y.T, Y, centered), torch.tensor(1.0, dtype=torch.float64)
        )
    y = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    torch.testing.assert_close(
        kernel_alignment(torch.outer(y, y), y), torch.tensor(1.0, dtype=torch.float64)
    )


def test_alignment_of_scaled_psd_kernel_with_itself():
    A = torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    K = A @ A.T
    torch.testing.assert_close(kernel_distance(K, 2.5 * K), torch.tensor(0.0, dtype=torch.float64))
    evals, evecs = torch.linalg.eigh(K)
    Y = evecs * evals.sqrt()  # Y Y^T == K
    for centered in (True, False):
        torch.testing.assert_close(
            kernel_alignment(2.5 * K, Y, centered), torch.tensor(1.0, dtype=torch.float64)
        )


def test_alignment_hand_cases_centered_and_uncentered():
    y = torch.tensor([1.0, 1.0, 1.0, -1.0], dtype=torch.float64)
    K = torch.ones(4, 4, dtype=torch.float64) + torch.eye(4, dtype=torch.float64)
    # Uncentered: ((1^T y)^2 + ||y||^2) / (||K||_F ||y||^2) = 8 / (sqrt(28) * 4).
    torch.testing.assert_close(
        kernel_alignment(K, y, centered=False), torch.tensor(2 / 28**0.5, dtype=torch.float64)
    )
    # Centered: HKH = H and Hy = y - 1/2, so the alignment is ||Hy||^2 / (sqrt(3) ||Hy||^2).
    torch.testing.assert_close(
        kernel_alignment(K, y, centered=True), torch.tensor(1 / 3**0.5, dtype=torch.float64)
    )


def test_alignment_of_full_kernel_uses_vec_target_and_per_output_centering():
    gen = torch.Generator().manual_seed(3)
    n, n_out = 5, 3
    A = torch.randn(n * n_out, n * n_out, generator=gen, dtype=torch.float64)
    K, Y = A @ A.T, torch.randn(n, n_out, generator=gen, dtype=torch.float64)
    for centered in (True, False):
        H_n = centering(n) if centered else torch.eye(n, dtype=torch.float64)
        H = torch.kron(H_n, torch.eye(n_out, dtype=torch.float64))
        Kc, v = H @ K @ H, H @ Y.reshape(-1)
        expected = (v @ Kc @ v) / (torch.linalg.matrix_norm(Kc) * (v @ v))
        torch.testing.assert_close(kernel_alignment(K, Y, centered), expected)


def test_kernel_distance_of_orthogonalish_kernels_is_near_one():
    half = torch.eye(10, dtype=torch.float64)
    torch.testing.assert_close(
        kernel_distance(half[:, :5] @ half[:5], half[:, 5:] @ half[5:]), torch.tensor(1.0).double()
    )
    u, v = torch.randn(2, 400, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert kernel_distance(torch.outer(u, u), torch.outer(v, v)) > 0.95


# --- matrix-free estimators ------------------------------------------------------------------


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_label_projection_norm_is_exact(centered, chunk_size):
    model, x = tanh_mlp(), inputs()
    Y = torch.randn(5, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    K = empirical_ntk(model, x, "full")
    v = (Y - Y.mean(0) if centered else Y).reshape(-1)
    got = label_projection_norm(model, x, Y, centered=centered, chunk_size=chunk_size)
    torch.testing.assert_close(got, v @ K @ v, rtol=1e-6, atol=1e-10)


def test_label_projection_norm_scalar_output():
    model, x = tanh_mlp(out_dim=1), inputs()
    y = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0], dtype=torch.float64)
    K = empirical_ntk(model, x, "scalar")
    torch.testing.assert_close(label_projection_norm(model, x, y), y @ K @ y, rtol=1e-6, atol=1e-10)
    with pytest.raises(ValueError, match="do not match outputs"):
        label_projection_norm(tanh_mlp(), x, y)


@pytest.mark.parametrize("centered", [False, True])
def test_frobenius_norm_estimate_within_three_stderr(centered):
    model, x = tanh_mlp(), inputs(n=8)
    K = empirical_ntk(model, x, "full")
    if centered:
        H = torch.kron(centering(8), torch.eye(3, dtype=torch.float64))
        K = H @ K @ H
    exact = torch.linalg.matrix_norm(K) ** 2
    est, err = frobenius_norm_estimate(
        model,
        x,
        n_probes=64,
        generator=torch.Generator().manual_seed(0),
        centered=centered,
        chunk_size=3,
    )
    assert 0 < err < 0.2 * exact
    assert abs(est - exact) < 3 * err


def test_frobenius_sketch_deflation():
    model, x = tanh_mlp(), inputs(n=8)
    exact = torch.linalg.matrix_norm(empirical_ntk(model, x, "full")) ** 2

    def estimate(n_probes, sketch_size):
        gen = torch.Generator().manual_seed(0)
        return frobenius_norm_estimate(model, x, n_probes, gen, sketch_size=sketch_size)

    _, plain_err = estimate(16, 0)
    est, err = estimate(16, 8)
    assert abs(est - exact) < 3 * err and err < 0.25 * plain_err
    # A sketch spanning all n*O directions measures K exactly.
    est, err = estimate(2, 24)
    torch.testing.assert_close(est, exact)
    assert err < 1e-8 * exact


@pytest.mark.parametrize("centered", [False, True])
def test_matrix_free_alignment_matches_exact(centered):
    model, x = tanh_mlp(), inputs(n=8)
    Y = nn.functional.one_hot(torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]), 3).double()
    exact = kernel_alignment(empirical_ntk(model, x, "full"), Y, centered)
    est, err = matrix_free_alignment(
        model, x, Y, n_probes=64, centered=centered, generator=torch.Generator().manual_seed(1)
    )
    assert abs(est - exact) < max(3 * err, 0.05 * abs(exact))


def test_kernel_matvec_falls_back_when_forward_ad_is_missing():
    torch.manual_seed(0)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(4, 2, batch_first=True)

        def forward(self, x):
            return self.attn(x, x, x)[0].mean(1)

    # Eval mode takes the fused fast path, which has no forward-mode AD formula.
    model = Attention().double().eval()
    x = torch.randn(4, 3, 4, dtype=torch.float64)
    exact = torch.linalg.matrix_norm(empirical_ntk(model, x, "full")) ** 2
    est, err = frobenius_norm_estimate(
        model, x, n_probes=32, generator=torch.Generator().manual_seed(0)
    )
    assert abs(est - exact) < 3 * err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    model, x = tanh_mlp(), inputs()
    Y = torch.randn(5, 3, dtype=torch.float64)
    cpu = (empirical_ntk(model, x, "full"), label_projection_norm(model, x, Y, centered=True))
    model, x, Y = model.cuda(), x.cuda(), Y.cuda()
    gpu = (
        empirical_ntk(model, x, "full", chunk_size=2),
        label_projection_norm(model, x, Y, centered=True),
    )
    for c, g in zip(cpu, gpu, strict=True):
        assert g.is_cuda
        torch.testing.assert_close(g.cpu(), c)
    est, err = frobenius_norm_estimate(
        model, x, n_probes=4, generator=torch.Generator(device="cuda").manual_seed(0)
    )
    assert est.is_cuda and torch.isfinite(err)
    assert kernel_alignment(gpu[0], Y).is_cuda
