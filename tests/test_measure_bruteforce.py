"""HessianSpectrum and the stability thresholds against brute force on tiny networks.

The top-k eigenvalues (k = 1, 2, 3), warm-started through parameter states whose top
eigenvectors jump between orthogonal blocks, equal eigvalsh of the dense Hessian in float64 and
float32, with dropout (the operator's fixed masks, applied by hand in the reference) and with
BatchNorm in eval and train mode. Adam's preconditioned step is lr S m exactly, S read from the
optimizer state (both bias corrections, eps outside the square root); the preconditioned
sharpness is the top eigenvalue of S^1/2 (H + L2) S^1/2 for parameter groups and coupled decay;
SGD's thresholds (momentum, Nesterov, dampening) split stable from divergent runs.
"""

import copy

import pytest
import torch
from conftest import Batches, EachStep, Held, fit_with
from conftest import dense_hessian as brute_force_hessian
from torch import nn

from dynamics_lab.measure.hessian import HessianSpectrum
from dynamics_lab.measure.stability import stability, threshold_of

torch.set_num_threads(1)


def mse(out, y):
    return ((out - y) ** 2).mean()


class TwoHeads(nn.Module):
    """Two tanh MLPs with disjoint parameters, each fitting its own target: the Hessian is block
    diagonal, so growing one head's output layer while shrinking the other's moves the top
    eigenvector to the other block, orthogonal to every vector a warm start carries."""

    def __init__(self, middle: nn.Module | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), middle or nn.Identity(),
                               nn.Linear(6, 1))
        self.b = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 1))

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], 1)


def batch(dtype, n=24):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, generator=g).to(dtype), torch.randn(n, 2, generator=g).to(dtype)


def dense_hessian(model, x, y, functorch=True) -> torch.Tensor:
    """The Hessian of the mean loss in float64 (conftest's brute force). torch.func.hessian
    (vmap over batch_norm's backward) disagrees with autograd and with central differences for
    BatchNorm in train mode: there `functorch=False` takes autograd's Hessian."""
    return brute_force_hessian(model.double(), mse, (x.double(), y.double()), functorch)


def measure(callback, model, data, steps=1, optimizer=None, update=None, stage=None):
    """The callback's rows {step: row} over `steps` steps of `model` in a real Trainer on the
    batch `data`: `stage(t)` runs before the measurement of step t (sets or reads the
    parameters), `update(model, batch)` is the loss each step trains on (none: no step moves)."""
    callbacks = ([EachStep(stage)] if stage else []) + [callback]
    rows = fit_with(callbacks, Held(model, mse, optimizer, update), Batches(*data),
                    max_steps=steps).rows
    assert all("hessian/failed" not in row for row in rows.values())
    return rows


def scaled_heads(model):
    """A function of the step that scales the output layers so head a's curvature grows and
    head b's shrinks past it."""
    wa, wb = model.a[-1].weight.detach().clone(), model.b[-1].weight.detach().clone()

    def scale(t):
        with torch.no_grad():
            model.a[-1].weight.copy_(wa * (0.5 + 0.5 * t))
            model.b[-1].weight.copy_(wb * (3.0 - 0.5 * t))
    return scale


def top_block(h: torch.Tensor, split: int) -> str:
    v = torch.linalg.eigh(h).eigenvectors[:, -1]
    return "a" if float(v[:split].norm()) > 0.5 else "b"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_warm_started_top_k_follows_the_top_across_blocks(k, dtype):
    model = TwoHeads().to(dtype)
    x, y = batch(dtype)
    callback = HessianSpectrum(k=k, tol=1e-6, max_iter=200, every=1, probe=(x, y))
    split = sum(p.numel() for p in model.a.parameters())
    scale, exact = scaled_heads(model), {}

    def stage(t):
        scale(t)
        exact[t] = dense_hessian(copy.deepcopy(model), x, y)

    rows = measure(callback, model, (x, y), steps=5, stage=stage)
    assert sorted(rows) == sorted(exact) == list(range(6))
    for t, h in exact.items():
        got = torch.tensor([rows[t][f"hessian/lambda_{i + 1}"] for i in range(k)],
                           dtype=torch.float64)
        rel = 1e-4 if dtype == torch.float32 else 1e-8
        torch.testing.assert_close(got, torch.linalg.eigvalsh(h).flip(0)[:k], rtol=rel, atol=0)
    owners = [top_block(exact[t], split) for t in sorted(exact)]
    assert owners[0] == "b" and owners[-1] == "a"  # the top eigenvector changed blocks


class FixedMask(nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, h):
        return h * self.mask


def dropout_reference(model, x, y, seed=0):
    """The dense Hessian with the dropout mask the operator draws (the global RNG seeded to
    the probe seed for one forward) written into the network as a fixed multiplier."""
    seen = {}
    hook = model.a[2].register_forward_hook(lambda m, i, o: seen.setdefault("mask", o / i[0]))
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        model(x)
    hook.remove()
    reference = copy.deepcopy(model).eval()
    reference.a[2] = FixedMask(torch.nan_to_num(seen["mask"]))
    return dense_hessian(reference, x, y)


@pytest.mark.parametrize("kind", ["dropout", "batchnorm eval", "batchnorm train"])
def test_random_and_normalizing_layers_match_the_dense_hessian(kind):
    middle = nn.Dropout(0.3) if kind == "dropout" else nn.BatchNorm1d(6)
    model = TwoHeads(middle).double().train(kind != "batchnorm eval")
    if kind.startswith("batchnorm"):
        with torch.no_grad():
            middle.running_mean.uniform_(-0.5, 0.5)
            middle.running_var.uniform_(0.5, 2.0)
    x, y = batch(torch.float64)
    callback = HessianSpectrum(k=2, tol=1e-8, max_iter=200, every=1, probe=(x, y))
    scale, exact = scaled_heads(model), {}

    def stage(t):
        scale(t)
        if kind == "dropout":
            exact[t] = dropout_reference(model, x, y)
        else:
            exact[t] = dense_hessian(copy.deepcopy(model), x, y,
                                     functorch=kind == "batchnorm eval")

    rows = measure(callback, model, (x, y), steps=2, stage=stage)
    assert sorted(rows) == sorted(exact) == [0, 1, 2]
    for t, h in exact.items():
        got = torch.tensor([rows[t]["hessian/lambda_1"], rows[t]["hessian/lambda_2"]],
                           dtype=torch.float64)
        torch.testing.assert_close(got, torch.linalg.eigvalsh(h).flip(0)[:2], rtol=1e-8, atol=0)
    assert model.training == (kind != "batchnorm eval")


def sandwich(h, scale, l2=None) -> float:
    """Top eigenvalue of S^1/2 (H + L2) S^1/2, dense."""
    root = scale.double().sqrt()
    shifted = h + torch.diag(l2.double()) if l2 is not None else h
    return float(torch.linalg.eigvalsh(root[:, None] * shifted * root[None, :])[-1])


def test_sgd_groups_and_coupled_decay_enter_the_preconditioned_sharpness():
    model = TwoHeads().double()
    x, y = batch(torch.float64)
    h = dense_hessian(copy.deepcopy(model), x, y)
    n_a = sum(p.numel() for p in model.a.parameters())
    groups = torch.optim.SGD([{"params": model.a.parameters(), "lr": 0.1},
                              {"params": model.b.parameters(), "lr": 0.3,
                               "weight_decay": 0.05}], lr=0.1)
    scale = torch.cat([torch.ones(n_a), torch.full((h.shape[0] - n_a,), 3.0)])
    l2 = torch.cat([torch.zeros(n_a), torch.full((h.shape[0] - n_a,), 0.05)])
    row = measure(HessianSpectrum(tol=1e-10, probe=(x, y)), model, (x, y), optimizer=groups)[0]
    assert row["hessian/precond_lambda_max"] == pytest.approx(sandwich(h, scale, l2), rel=1e-8)
    assert row["hessian/threshold"] == pytest.approx(2 / 0.1)
    # One learning rate with coupled decay: the step is stable while lambda_max(H) + wd < 2/eta.
    decayed = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.3)
    row = measure(HessianSpectrum(tol=1e-10, probe=(x, y)), model, (x, y), optimizer=decayed)[0]
    top = float(torch.linalg.eigvalsh(h)[-1])
    assert row["hessian/precond_lambda_max"] == pytest.approx(top + 0.3, rel=1e-8)


def train_loss(model, batch):
    return mse(model(batch[0]), batch[1])


def flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_step_is_lr_times_the_preconditioner_times_the_first_moment(amsgrad):
    # eps = 0.3 and beta2 = 0.95 make eps placement and both bias corrections visible:
    # P = (1 - beta1^t)(sqrt(v / (1 - beta2^t)) + eps), not sqrt(v_hat + eps) nor without them.
    model = TwoHeads().double()
    x, y = batch(torch.float64)
    lr = 0.05
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.8, 0.95), eps=0.3,
                                 amsgrad=amsgrad)
    weights = {}
    callback = HessianSpectrum(tol=1e-10, every=4, probe=(x, y))
    row = measure(callback, model, (x, y), steps=4, optimizer=optimizer, update=train_loss,
                  stage=lambda t: weights.setdefault(t, flat(model)))[4]
    before, after = weights[3], weights[4]
    params = list(model.parameters())
    found = stability(optimizer, params)
    m = torch.cat([optimizer.state[p]["exp_avg"].reshape(-1) for p in params])
    torch.testing.assert_close(before - after, lr * found.scale * m, rtol=1e-10, atol=1e-14)
    v = torch.cat([optimizer.state[p]["exp_avg_sq"].reshape(-1) for p in params])
    wrong = 1 / ((1 - 0.8**4) * (v / (1 - 0.95**4) + 0.3).sqrt())  # eps inside the root
    assert float((wrong - found.scale).abs().max()) > 0.1 * float(found.scale.max())
    # The preconditioned sharpness is the top eigenvalue of S^1/2 H S^1/2 at these parameters.
    h = dense_hessian(copy.deepcopy(model), x, y)
    assert row["hessian/precond_lambda_max"] == pytest.approx(sandwich(h, found.scale),
                                                              rel=1e-8)
    assert row["hessian/threshold"] == pytest.approx((2 + 1.6) / (0.2 * lr))


def test_adam_parameters_without_a_gradient_do_not_hide_the_preconditioned_sharpness():
    model = TwoHeads().double()
    x, y = batch(torch.float64)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)

    def head_a_loss(model, batch):  # head b gets no gradient: Adam keeps no state for it
        return mse(model.a(batch[0]), batch[1][:, :1])

    callback = HessianSpectrum(tol=1e-10, every=3, probe=(x, y))
    row = measure(callback, model, (x, y), steps=3, optimizer=optimizer, update=head_a_loss)[3]
    found = stability(optimizer, list(model.parameters()))
    n_a = sum(p.numel() for p in model.a.parameters())
    assert found.scale is not None and bool((found.scale[n_a:] == 0).all())
    h = dense_hessian(copy.deepcopy(model), x, y)
    assert row["hessian/precond_lambda_max"] == pytest.approx(sandwich(h, found.scale),
                                                              rel=1e-8)


@pytest.mark.parametrize("kwargs", [dict(momentum=0.9), dict(momentum=0.5, nesterov=True),
                                    dict(momentum=0.9, dampening=0.5), dict()])
def test_sgd_thresholds_split_stable_from_divergent_runs(kwargs):
    w = nn.Parameter(torch.ones(1, dtype=torch.float64))
    threshold = threshold_of(torch.optim.SGD([w], lr=0.1, **kwargs))
    for factor, stable in ((0.97, True), (1.03, False)):
        w = nn.Parameter(torch.ones(1, dtype=torch.float64))
        optimizer = torch.optim.SGD([w], lr=0.1, **kwargs)
        for _ in range(1500):
            w.grad = factor * threshold * w.detach()  # the gradient of 0.5 lambda w^2
            optimizer.step()
        assert (abs(w.item()) < 1e-3) == stable, (kwargs, factor, w.item())
