"""The lazy baseline (measure/kernel_baseline.py): kernel regression with the initial NTK, against
the pseudo-inverse by hand and against gradient descent run to convergence on a linear model."""

import copy

import numpy as np
import pytest
import torch
from conftest import Batches, fit_with
from torch import nn

from dynamics_lab.losses import squared
from dynamics_lab.measure.kernel_baseline import KernelBaseline, kernel_regression
from dynamics_lab.schema import OptimConfig
from dynamics_lab.train.module import DynamicsModule


def test_kernel_regression_is_the_pseudo_inverse_solution():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 4, generator=g, dtype=torch.float64)
    k_train = a @ a.T  # rank 4 of 6: the pseudo-inverse, not an inverse
    k_cross = torch.randn(3, 4, generator=g, dtype=torch.float64) @ a.T
    residual = torch.randn(6, 1, generator=g, dtype=torch.float64)
    fit, rank = kernel_regression(k_train, k_cross, residual)
    expected = k_cross.numpy() @ np.linalg.pinv(k_train.numpy(), rcond=1e-10) @ residual.numpy()
    np.testing.assert_allclose(fit.numpy(), expected, rtol=1e-8, atol=1e-10)
    assert rank == 4


def kernel_rows(model, data, **fit):
    """The kernel/ metrics of each step of a real fit of `model` on `data` with KernelBaseline
    (beside them the module logs its batch loss)."""
    module = DynamicsModule(model, "squared", OptimConfig(), log_every=1)
    rows = fit_with([KernelBaseline(every=1)], module, data, **fit).rows
    return {step: {k: v for k, v in row.items() if k.startswith("kernel/")}
            for step, row in rows.items()}


def run_baseline(model, train, test):
    """Step 0 of a real one-step fit of a copy of `model`: the baseline from `model` itself."""
    data = Batches(*train, splits={"train": train, "val": test})
    return kernel_rows(copy.deepcopy(model), data)[0]


def test_a_linear_model_baseline_is_where_gradient_descent_converges():
    # f(x) = w.x from w0: its NTK is x.x', and GD on the squared loss converges to the
    # interpolant nearest w0, whose test loss the baseline must give before any training.
    g = torch.Generator().manual_seed(1)
    x, xt = torch.randn(8, 20, generator=g), torch.randn(50, 20, generator=g)
    w_true = torch.randn(20, 1, generator=g)
    train, test = (x, x @ w_true), (xt, xt @ w_true)
    model = nn.Linear(20, 1, bias=False)
    row = run_baseline(model, train, test)
    assert row["kernel/lazy_rank"] == 8
    assert row["kernel/lazy_train_loss"] == pytest.approx(0.0, abs=1e-10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02)
    for _ in range(4000):
        optimizer.zero_grad()
        squared(model(x), train[1]).backward()
        optimizer.step()
    assert squared(model(x), train[1]).item() < 1e-8
    converged = squared(model(xt), test[1]).item()
    assert row["kernel/lazy_test_loss"] == pytest.approx(converged, rel=1e-4)
    assert row["kernel/lazy_test_loss"] > 0.1  # 8 points cannot pin 20 weights down


def test_measured_once_and_remembered_across_a_resume(tmp_path):
    x = torch.randn(6, 3)
    data = Batches(x, x[:, :1], splits={"train": (x, x[:, :1]), "val": (x, x[:, :1])})
    checkpoint = tmp_path / "last.ckpt"
    first = kernel_rows(nn.Linear(3, 1), data, max_steps=3, save_to=checkpoint)
    assert set(first[0]) == {"kernel/lazy_test_loss", "kernel/lazy_train_loss",
                             "kernel/lazy_rank"}
    assert sorted(first) == [0, 1, 2, 3] and not any(first[t] for t in (1, 2, 3))
    resumed = kernel_rows(nn.Linear(3, 1), data, max_steps=6, ckpt_path=checkpoint)
    # Steps 3 (its batch loss) to 6 logged again, the baseline never.
    assert sorted(resumed) == [3, 4, 5, 6] and not any(resumed.values())


def test_a_task_without_splits_or_a_multi_output_network_logs_nothing():
    x = torch.randn(6, 3)
    assert not any(kernel_rows(nn.Linear(3, 1), Batches(x, x[:, :1])).values())
    assert run_baseline(nn.Linear(3, 2), (x, x[:, :2]), (x, x[:, :2])) == {}
