"""The lazy baseline (measure/kernel_baseline.py): kernel regression with the initial NTK, against
the pseudo-inverse by hand and against gradient descent run to convergence on a linear model."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import ListLogger
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


def run_baseline(model, train, test):
    logger = ListLogger()
    task = SimpleNamespace(splits={"train": train, "val": test})
    trainer = SimpleNamespace(global_step=0, loggers=[logger], datamodule=task)
    module = DynamicsModule(model, "squared", OptimConfig(), log_every=1)
    callback = KernelBaseline()
    callback.run(trainer, module)
    return callback, trainer, module, logger.rows[0]


def test_a_linear_model_baseline_is_where_gradient_descent_converges():
    # f(x) = w.x from w0: its NTK is x.x', and GD on the squared loss converges to the
    # interpolant nearest w0, whose test loss the baseline must give before any training.
    g = torch.Generator().manual_seed(1)
    x, xt = torch.randn(8, 20, generator=g), torch.randn(50, 20, generator=g)
    w_true = torch.randn(20, 1, generator=g)
    train, test = (x, x @ w_true), (xt, xt @ w_true)
    model = nn.Linear(20, 1, bias=False)
    callback, _, _, row = run_baseline(model, train, test)
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


def test_measured_once_and_remembered_across_a_resume():
    x = torch.randn(6, 3)
    callback, trainer, module, first = run_baseline(nn.Linear(3, 1), (x, x[:, :1]),
                                                    (x, x[:, :1]))
    assert set(first) == {"kernel/lazy_test_loss", "kernel/lazy_train_loss", "kernel/lazy_rank"}
    trainer.global_step = 10
    assert callback.record(trainer, module) == {}
    restored = KernelBaseline()
    restored.load_state_dict(callback.state_dict())
    assert restored.record(trainer, module) == {}


def test_a_task_without_splits_or_a_multi_output_network_logs_nothing():
    logger = ListLogger()
    trainer = SimpleNamespace(global_step=0, loggers=[logger], datamodule=SimpleNamespace())
    module = DynamicsModule(nn.Linear(3, 1), "squared", OptimConfig(), log_every=1)
    assert KernelBaseline().run(trainer, module) == {}
    x = torch.randn(6, 3)
    _, _, _, row = run_baseline(nn.Linear(3, 2), (x, x[:, :2]), (x, x[:, :2]))
    assert row == {}
