"""The tracking eigensolver (linalg/tracker.py): each reported value is within its certified
bound of an eigenvalue of the operator, the top k match dense eigvalsh when the top pair nearly
coincides and rotates, a sudden jump is caught by the residuals, a direction orthogonal to the
tracked space is found by the scout or an audit, and the block products match one at a time."""

import math

import pytest
import torch
from conftest import Batches, EachStep, Held, Quadratic, fit_with, mean_output
from torch import nn

from dynamics_lab.linalg.hvp import hessian_vector_product
from dynamics_lab.linalg.tracker import track
from dynamics_lab.measure.hessian import HessianSpectrum

DIM = 120


def basis(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(DIM, DIM, generator=g, dtype=torch.float64))[0]


def bulk(seed: int = 0) -> torch.Tensor:
    return 3 * torch.rand(DIM, generator=torch.Generator().manual_seed(seed + 1),
                          dtype=torch.float64)


def operator(q: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    return (q * lam) @ q.T


def plane_rotation(q: torch.Tensor, angle: float) -> torch.Tensor:
    """q with its first two columns turned by `angle` inside their plane."""
    c, s = math.cos(angle), math.sin(angle)
    q = q.clone()
    q[:, 0], q[:, 1] = c * q[:, 0] - s * q[:, 1], s * q[:, 0] + c * q[:, 1]
    return q


PROBE = (torch.zeros(2, 1), torch.zeros(2, 1))


def measure_along(callback, trajectory, start=0, ckpt_path=None, save_to=None,
                  after=None):
    """HessianSpectrum's rows {step: row} in a real Trainer whose step t sets the quadratic's
    Hessian to trajectory[t] before the measurement; from `start` when resuming `ckpt_path`;
    `after(step)` runs once the step's measurement is done."""
    model = Quadratic(DIM)
    stage = EachStep(lambda step: model.A.copy_(trajectory[step]))
    callbacks = [stage, callback] + ([EachStep(after)] if after else [])
    rows = fit_with(callbacks, Held(model, mean_output), Batches(*PROBE),
                    max_steps=len(trajectory) - 1, ckpt_path=ckpt_path, save_to=save_to).rows
    assert sorted(rows) == list(range(start, len(trajectory)))
    return rows


def run(trajectory, k: int = 1, tol: float = 1e-6, **options):
    """track() along a list of matrices, carrying the block; one TrackResult each."""
    block = scout = None
    out = []
    for t, a in enumerate(trajectory):
        result = track(lambda v, a=a: a @ v, DIM, k, block=block, scout=scout, tol=tol,
                       max_iter=DIM, generator=torch.Generator().manual_seed(t), **options)
        block, scout = result.block, result.scout
        out.append(result)
    return out


def assert_certificate_holds(result, a):
    """Each reported value is within its bound of some eigenvalue of a (to rounding)."""
    exact = torch.linalg.eigvalsh(a)
    for value, bound in zip(result.eigenvalues, result.bounds):
        assert float((exact - value).abs().min()) <= float(bound) + 1e-10


def test_near_degenerate_top_pair_rotating_at_every_measurement():
    # Top pair 10 and 9.95 (0.5% apart) turns by 0.4 rad inside its plane between measurements;
    # the pair's plane stays put, so the carried block holds it and few products suffice.
    q, lam = basis(), bulk()
    lam[0], lam[1], lam[2] = 10.0, 9.95, 8.0
    trajectory = [operator(plane_rotation(q, 0.4 * t), lam) for t in range(12)]
    for k in (1, 2):
        results = run(trajectory, k=k, tol=1e-6)
        for result, a in zip(results, trajectory):
            exact = torch.linalg.eigvalsh(a).flip(0)[:k]
            assert torch.allclose(result.eigenvalues, exact, rtol=1e-6)
            assert result.certified
            assert_certificate_holds(result, a)
        later = [r.n_matvec for r in results[1:]]
        assert all(r.method == "tracked" for r in results[1:])
        assert max(later) == k + 3 + 1  # the carried block and the scout, nothing more


def test_a_sudden_jump_is_caught_by_the_residuals():
    # Between two measurements the top eigenvector turns 60 degrees towards a bulk direction and
    # its eigenvalue jumps from 10 to 14: the carried vectors' residuals are large, the tracker
    # expands (or falls back) and reports the new top.
    q, lam = basis(), bulk()
    lam[0], lam[1] = 10.0, 9.0
    before = operator(q, lam)
    turned = q.clone()
    c, s = math.cos(math.pi / 3), math.sin(math.pi / 3)
    turned[:, 0], turned[:, 60] = c * q[:, 0] + s * q[:, 60], -s * q[:, 0] + c * q[:, 60]
    lam_after = lam.clone()
    lam_after[0] = 14.0
    after = operator(turned, lam_after)
    results = run([before, after], k=1, tol=1e-6)
    assert results[1].method in ("expanded", "lanczos")
    assert results[1].n_matvec > 5
    assert float(results[1].eigenvalues[0]) == pytest.approx(14.0, rel=1e-6)
    assert_certificate_holds(results[1], after)


def test_a_direction_orthogonal_to_the_tracked_space_is_found_by_the_scout_or_an_audit():
    # A bulk direction, orthogonal to every carried vector, jumps to the top (12 > 10). No
    # residual sees it: the carried pairs stay exact. The reported value is still a true
    # eigenvalue within its bound, and the scout's power steps find the new top in a few
    # measurements; an audit (a warm Lanczos with a random part) finds it at once.
    q, lam = basis(), bulk()
    lam[0], lam[1], lam[2] = 10.0, 9.0, 8.0
    before = operator(q, lam)
    lam_after = lam.clone()
    lam_after[50] = 12.0
    after = operator(q, lam_after)
    results = run([before] + [after] * 12, k=1, tol=1e-6)
    found = [t for t, r in enumerate(results) if abs(float(r.eigenvalues[0]) - 12.0) < 1e-5]
    assert found and found[0] <= 10
    assert all(found[0] <= t for t in found) and found == list(range(found[0], 13))
    for result, a in zip(results, [before] + [after] * 12):
        assert_certificate_holds(result, a)
    audited = track(lambda v: after @ v, DIM, 1, block=results[0].block,
                    scout=results[0].scout, tol=1e-6, max_iter=DIM, audit=True)
    assert audited.method == "audit"
    assert float(audited.eigenvalues[0]) == pytest.approx(12.0, rel=1e-6)


def test_a_bound_covers_the_distance_to_an_eigenvalue_the_space_barely_touches():
    # The top Ritz vector mixes the top two eigenvectors (1.0 and 0.5) at 0.155 rad; the other
    # carried vectors sit in a bulk far below. A gap estimated from the other Ritz values (as a
    # Kato-Temple bound would take it) is ~6, but the true gap to 0.5 is 0.5: the quadratic bound
    # would claim 1e-3 where the value is 1.2e-2 away. The residual bound holds.
    g = torch.Generator().manual_seed(0)
    q = torch.linalg.qr(torch.randn(100, 100, generator=g, dtype=torch.float64))[0]
    lam = -5.0 - torch.rand(100, generator=g, dtype=torch.float64)
    lam[0], lam[1] = 1.0, 0.5
    a = (q * lam) @ q.T
    block = torch.stack([math.cos(0.155) * q[:, 0] + math.sin(0.155) * q[:, 1], q[:, 2],
                         q[:, 3], q[:, 4]], 1)
    first = track(lambda v: a @ v, 100, 1, block=block, scout=q[:, 5], tol=1e-3, max_expand=0)
    assert first.method == "lanczos" or not first.certified or float(
        first.eigenvalues[0]) == pytest.approx(1.0, rel=1e-3)
    for result in (first, track(lambda v: a @ v, 100, 1, block=block, scout=q[:, 5], tol=0.5)):
        assert_certificate_holds(result, a)


def test_an_uncertified_value_says_so():
    # No expansion allowed and a Lanczos fallback capped at 3 steps: the value is reported with
    # certified = False, never as if it had converged.
    q, lam = basis(), bulk()
    lam[0] = 10.0
    a, b = operator(q, lam), operator(plane_rotation(q, 1.0), lam)
    block = track(lambda v: a @ v, DIM, 1, tol=1e-8, max_iter=DIM)
    result = track(lambda v: b @ v, DIM, 1, block=block.block, scout=block.scout, tol=1e-8,
                   max_expand=0, max_iter=3)
    assert result.method == "lanczos" and not result.certified


class TwoGroups(nn.Module):
    """A small tanh MLP with dropout (fixed masks in the HVP): two weight groups and biases."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Dropout(0.2), nn.Linear(6, 2))

    def forward(self, x):
        return self.net(x)


def mse(out, y):
    return ((out - y) ** 2).mean()


def dense_hessian(model, batch, seed=0):
    """The Hessian of the fixed-mask loss, column by column from the operator's own matvec."""
    with hessian_vector_product(model, mse, batch, method="double_backward", seed=seed) as hvp:
        eye = torch.eye(hvp.dim, dtype=hvp.dtype)
        return torch.stack([hvp(eye[:, i]) for i in range(hvp.dim)], dim=1)


@pytest.mark.parametrize("method", ["reuse", "func"])
def test_block_products_equal_single_products(method):
    torch.manual_seed(0)
    model = TwoGroups().double().train()
    batch = (torch.randn(32, 3, dtype=torch.float64), torch.randn(32, 2, dtype=torch.float64))
    h = dense_hessian(model, batch)
    with hessian_vector_product(model, mse, batch, method=method) as hvp:
        v = torch.randn(hvp.dim, 5, dtype=torch.float64)
        assert torch.allclose(hvp.matmat(v), h @ v, atol=1e-10)
        assert torch.allclose(hvp.matmat(v, batched=True), h @ v, atol=1e-10)


@pytest.mark.parametrize("batched", ["off", "on", "auto"])
def test_tracked_sharpness_along_gradient_descent_matches_dense_eigvalsh(batched):
    # A real trajectory: GD on the small MLP (dropout masks fixed by probe_seed), measured at
    # every step by the tracker; k=2 against eigvalsh of the dense Hessian, on the same masks.
    torch.manual_seed(1)
    model = TwoGroups().double().train()
    batch = (torch.randn(32, 3, dtype=torch.float64), torch.randn(32, 2, dtype=torch.float64))
    callback = HessianSpectrum(k=2, tol=1e-6, solver="track", audit_every=0, batched=batched,
                               every=1, probe=batch)
    exact = {}

    def reference(step):
        exact[step] = torch.linalg.eigvalsh(dense_hessian(model, batch)).flip(0)

    def update(model, batch):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return mse(model(batch[0]), batch[1])

    module = Held(model, mse, lambda params: torch.optim.SGD(params, lr=0.3), update)
    rows = fit_with([EachStep(reference), callback], module, Batches(*batch), max_steps=7).rows
    assert sorted(rows) == list(range(8))
    for step, row in rows.items():
        assert row["hessian/certified"] == 1.0
        for i in (1, 2):
            assert row[f"hessian/lambda_{i}"] == pytest.approx(float(exact[step][i - 1]),
                                                               rel=1e-5)
        assert row["hessian/batched"] == {"on": 1.0, "off": 0.0}.get(batched, row[
            "hessian/batched"])


def test_the_tracked_block_travels_with_the_checkpoint(tmp_path):
    # A callback resumed from a Lightning checkpoint continues exactly as the one that wrote
    # it, audits included (audit_every=3 falls on the restored half).
    q, lam = basis(), bulk()
    lam[0], lam[1] = 10.0, 9.5
    trajectory = [operator(plane_rotation(q, 0.1 * t), lam) for t in range(5)]

    def callback():
        # batched pinned: "auto" decides by timing, and the two ways round differently
        return HessianSpectrum(k=1, tol=1e-8, solver="track", audit_every=3, max_iter=DIM,
                               every=1, batched="off", probe=PROBE)

    full = measure_along(callback(), trajectory)
    assert all(r["hessian/lambda_1"] == pytest.approx(10.0, rel=1e-8) for r in full.values())
    checkpoint = tmp_path / "half.ckpt"
    measure_along(callback(), trajectory[:2], save_to=checkpoint)
    # A fresh callback in a Trainer resumed from the checkpoint (Lightning restores its state).
    resumed = measure_along(callback(), trajectory, start=2, ckpt_path=checkpoint)
    assert [resumed[t] for t in range(2, 5)] == [full[t] for t in range(2, 5)]
    assert full[3]["hessian/fallback"] == 1.0  # the audit


def test_after_a_fallback_lanczos_runs_directly_then_tracking_is_retried():
    # The top eigenvector turns 1 rad out of the carried block at every measurement: tracking
    # cannot certify within max_expand=0 and falls back; the next retry_after=2 measurements
    # skip the attempt.
    q, lam = basis(), bulk()
    lam[0], lam[1] = 10.0, 8.0
    callback = HessianSpectrum(k=1, tol=1e-8, solver="track", audit_every=0, max_expand=0,
                               retry_after=2, max_iter=DIM, every=1, probe=PROBE)
    trajectory = []
    for t in range(6):
        turned = q.clone()  # the top eigenvector turns 1 rad towards a fresh bulk direction
        c, s = math.cos(1.0), math.sin(1.0)
        new = 50 + t
        turned[:, 0], turned[:, new] = c * q[:, 0] + s * q[:, new], c * q[:, new] - s * q[:, 0]
        q = turned
        trajectory.append(operator(q, lam))
    left = []
    rows = measure_along(callback, trajectory,
                         after=lambda step: left.append(callback.direct_left["plain"]))
    for row in rows.values():
        assert row["hessian/lambda_1"] == pytest.approx(10.0, rel=1e-8)
        assert row["hessian/certified"] == 1.0 and row["hessian/fallback"] == 1.0
    # t=0 cold start; t=1 tracking fails -> 2 direct measurements (t=2, 3); t=4 tries again.
    assert left == [0, 2, 1, 0, 2, 1]
