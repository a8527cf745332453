"""Warm-started sharpness tracks eigenvalue crossings: on a quadratic loss 0.5 theta^T A(t) theta
whose Hessian A(t) is set exactly, HessianSpectrum's top eigenvalues equal eigvalsh(A(t)) at
every measurement, when the top two swap and when the new top eigenvector is orthogonal to the
old one, for k=1 and k=2; and on a smooth trajectory the warm start still saves matvecs."""

import pytest
import torch
from conftest import Batches, EachStep, Held, Quadratic, fit_with, mean_output

from dynamics_lab.linalg.lanczos import lanczos
from dynamics_lab.measure.hessian import HessianSpectrum

DIM = 120


def spectrum(top: dict[int, float], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random eigenbasis Q and eigenvalues: a bulk in [0, 3] and `top` on chosen axes."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(DIM, DIM, generator=g, dtype=torch.float64))
    lam = 3 * torch.rand(DIM, generator=g, dtype=torch.float64)
    for i, value in top.items():
        lam[i] = value
    return q, lam


def rotation(angle: float) -> torch.Tensor:
    """A rotation by `angle` in the (0, 1) and (2, 3) planes of the eigenbasis."""
    r = torch.eye(DIM, dtype=torch.float64)
    c, s = torch.cos(torch.tensor(angle)), torch.sin(torch.tensor(angle))
    for i in (0, 2):
        r[i, i], r[i, i + 1], r[i + 1, i], r[i + 1, i + 1] = c, -s, s, c
    return r


def measure_along(trajectory, k: int, warm_start: bool = True, tol: float = 1e-8,
                  **options):
    """HessianSpectrum's logged rows at A(t) for t = 0, 1, ... (one measurement each), in a real
    Trainer whose step t sets A(t) before the measurement of step t."""
    model = Quadratic(DIM)
    probe = (torch.zeros(2, 1), torch.zeros(2, 1))
    callback = HessianSpectrum(k=k, tol=tol, warm_start=warm_start, max_iter=DIM, every=1,
                               probe=probe, **options)
    stage = EachStep(lambda step: model.A.copy_(trajectory[step]))
    rows = fit_with([stage, callback], Held(model, mean_output), Batches(*probe),
                    max_steps=len(trajectory) - 1).rows
    assert sorted(rows) == list(range(len(trajectory)))
    return [rows[step] for step in range(len(trajectory))]


def matrix(q, lam):
    return (q * lam) @ q.T


def assert_top_k(rows, trajectory, k):
    for row, a in zip(rows, trajectory):
        assert "hessian/failed" not in row
        exact = torch.linalg.eigvalsh(a).flip(0)[:k]
        for i in range(k):
            assert row[f"hessian/lambda_{i + 1}"] == pytest.approx(float(exact[i]), rel=1e-6)


# The tracker without audits: every value comes from the carried block and its Krylov steps.
SOLVERS = {"lanczos": {}, "track": {"solver": "track", "audit_every": 0}}


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("k", [1, 2])
def test_crossing_top_eigenvalues(k, solver):
    # The top two swap between the first and second measurement, (10, 9.5, 8) -> (9.5, 10,
    # 9.2), and the third climbs past both: -> (9, 10.5, 10.4) -> (8.5, 11, 11.6).
    q, _ = spectrum({})
    trajectory = []
    for t in range(4):
        _, lam = spectrum({0: 10.0 - 0.5 * t, 1: 9.5 + 0.5 * t, 2: 8.0 + 1.2 * t})
        trajectory.append(matrix(q, lam))
    rows = measure_along(trajectory, k, **SOLVERS[solver])
    assert_top_k(rows, trajectory, k)


@pytest.mark.parametrize("k", [1, 2])
def test_new_top_eigenvector_orthogonal_to_every_tracked_one(k):
    # A direction from the bulk (eigenvalue < 3) becomes the top one: it is orthogonal to the
    # old top eigenvector and to every Ritz vector the warm start carries.
    q, lam = spectrum({0: 10.0, 1: 9.0, 2: 8.0})
    before = matrix(q, lam)
    _, lam_after = spectrum({0: 10.0, 1: 9.0, 2: 8.0, 50: 12.0})
    trajectory = [before, matrix(q, lam_after), before]
    rows = measure_along(trajectory, k)
    assert_top_k(rows, trajectory, k)


def test_a_start_from_the_old_top_eigenvector_alone_misses_the_swap():
    # Why the warm start mixes: from exactly the old top eigenvector the Krylov space is that
    # vector, the residual is zero and Lanczos reports the old eigenvalue as converged.
    q, _ = spectrum({})
    _, lam = spectrum({0: 9.5, 1: 10.0})
    a = matrix(q, lam)
    result = lanczos(lambda v: a @ v, DIM, k=1, tol=1e-8, v0=q[:, 0])
    assert result.converged and result.eigenvalues[0].item() == pytest.approx(9.5)


def test_the_warm_start_saves_matvecs_on_a_smooth_trajectory():
    # The eigenbasis turns by 0.02 rad and the top eigenvalues drift by 1% between measurements;
    # they sit close to the bulk, so a random start needs many steps.
    q, _ = spectrum({})
    trajectory = []
    for t in range(8):
        _, lam = spectrum({0: 4.0 * (1 + 0.01 * t), 1: 3.7, 2: 3.4 * (1 - 0.01 * t)})
        trajectory.append(matrix(q @ rotation(0.02 * t), lam))
    warm = measure_along(trajectory, k=1, tol=1e-3)
    cold = measure_along(trajectory, k=1, tol=1e-3, warm_start=False)
    for row, a in zip(warm, trajectory):
        assert row["hessian/lambda_1"] == pytest.approx(float(torch.linalg.eigvalsh(a)[-1]),
                                                        rel=1e-4)
    warm_mv = sum(r["hessian/matvecs"] for r in warm[1:])
    cold_mv = sum(r["hessian/matvecs"] for r in cold[1:])
    assert warm_mv < 0.85 * cold_mv  # 67 against 90 matvecs
