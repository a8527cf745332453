"""The top-NTK-mode measurement against explicit Jacobians and output Hessians, and the
two-variable map against GD itself where it is exact (one residual)."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from dynamics_lab.linalg.hessian_rank import flat_function
from dynamics_lab.losses import cross_entropy, squared
from dynamics_lab.measure.second_order import SecondOrderModes, top_mode
from dynamics_lab.models.quadratic import QuadraticConfig, QuadraticModel
from dynamics_lab.phenomena.eos_quadratic.reduced import (
    budget,
    edge_numbers,
    reduced_variables,
    step,
    trajectory,
)
from dynamics_lab.tasks.base import TaskSpec


def quadratic(dim, outputs, params, curvature=0.8, seed=0):
    torch.manual_seed(seed)
    net = QuadraticModel(QuadraticConfig(n_params=params, curvature=curvature),
                         TaskSpec((dim,), outputs, "squared")).double()
    with torch.no_grad():
        net.theta.normal_()
    return net


def brute_force(model, x, y):
    """Every quantity from the dense Jacobian and the dense Hessian of every output."""
    call, flat = flat_function(model, lambda out: out.reshape(-1))
    n = x.shape[0]
    jac = torch.func.jacrev(call)(flat, x)  # (m, P)
    hessians = torch.func.hessian(call)(flat, x)  # (m, P, P)
    r = call(flat, x) - y.reshape(-1)
    eigenvalues, vectors = torch.linalg.eigh(jac @ jac.T / n)
    u = vectors[:, -1]
    if u @ r < 0:
        u = -u
    lam = eigenvalues[-1]
    j = jac.T @ u / n**0.5
    q_u = torch.einsum("i,ipq->pq", u, hessians) / n**0.5
    q = q_u @ j
    return {"second_order/ntk_lambda": lam, "second_order/ntk_lambda_2": eigenvalues[-2],
            "second_order/zeta": u @ r / n**0.5, "second_order/a": j @ q / lam,
            "second_order/b": q @ q / lam, "second_order/loss": squared(model(x), y)}


class TanhNet(nn.Module):
    """Two layers, biases: several parameter tensors, not quadratic in them."""

    def __init__(self):
        super().__init__()
        self.hidden, self.out = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(x)))


@pytest.mark.parametrize("make, n", [
    (lambda: quadratic(6, 2, 5), 2),  # 4 residuals < 5 parameters: the J J^T path
    (lambda: quadratic(6, 2, 5), 8),  # 16 residuals > 5 parameters: the J^T J path
    (lambda: quadratic(4, 1, 7, seed=3), 3),
    (lambda: (torch.manual_seed(0), TanhNet().double())[1], 5),
])
def test_top_mode_matches_dense_jacobian_and_hessians(make, n):
    model = make()
    torch.manual_seed(1)
    x = torch.randn(n, model.hidden.in_features if isinstance(model, TanhNet) else
                    model.jacobian.shape[0], dtype=torch.float64)
    y = torch.randn(n, 2 if isinstance(model, TanhNet) else model.jacobian.shape[1],
                    dtype=torch.float64)
    measured, expected = top_mode(model, (x, y)), brute_force(model, x, y)
    assert measured.keys() == expected.keys()
    for key, value in expected.items():
        assert measured[key] == pytest.approx(float(value.detach()), rel=1e-8, abs=1e-12), key
    assert measured["second_order/zeta"] >= 0
    assert measured["second_order/b"] * measured["second_order/ntk_lambda"] >= 0
    # Cauchy-Schwarz: (j . q)^2 <= |j|^2 |q|^2, i.e. a^2 <= b (kappa is a cosine)
    assert measured["second_order/a"] ** 2 <= measured["second_order/b"] * (1 + 1e-12)


def test_the_map_is_gd_exactly_for_one_residual():
    """One example, one output: the residual is the top mode, so x and |w| follow the map."""
    net = quadratic(5, 1, 6, curvature=1.0, seed=2)
    x, y = torch.randn(1, 5, dtype=torch.float64), torch.full((1, 1), 2.0, dtype=torch.float64)
    lr = 0.9 / top_mode(net, (x, y))["second_order/ntk_lambda"]  # x0 = 0.9: sharpens to the edge
    rows = []
    for t in range(12):
        m = top_mode(net, (x, y))
        rows.append({"step": t, **m})
        net.zero_grad()
        squared(net(x), y).backward()
        with torch.no_grad():
            net.theta -= lr * net.theta.grad
    v = reduced_variables(pd.DataFrame(rows), lr)
    x_next, w_next = step(v["x"].to_numpy()[:-1], v["w"].to_numpy()[:-1],
                          v["kappa"].to_numpy()[:-1])
    assert np.allclose(x_next, v["x"].to_numpy()[1:], rtol=1e-9)
    # w' is the new residual in the old step's curvature units (b moves with j): compare zeta
    zeta = pd.DataFrame(rows)["second_order/zeta"].to_numpy()
    big = zeta[:-1] > 1e-4  # below that, r = f - y cancels to a few digits in float64
    assert big.sum() >= 5
    assert np.allclose((np.abs(w_next) / v["w"].to_numpy()[:-1])[big], (zeta[1:] / zeta[:-1])[big],
                       rtol=1e-7)
    assert v["x"].max() > 1.0 and v["w"].max() > 0.05  # not a trivial stretch of the dynamics
    assert np.allclose(budget(v)["drive"], 0, atol=1e-9)  # nothing left for other modes
    assert np.allclose(v["top_share"], 1)  # the whole loss is the top mode's


def test_map_fixed_cases_by_hand():
    # w = 0: a fitted top mode leaves x alone and stays fitted
    assert step(np.array(1.5), np.array(0.0), np.array(0.3)) == (1.5, 0.0)
    # kappa = 1, the isotropic case: x' = x (1 - w)^2, w' = w (1 - x + x w / 2)
    x, w = step(np.array(2.0), np.array(0.1), np.array(1.0))
    assert x == pytest.approx(2.0 * 0.81) and w == pytest.approx(0.1 * (1 - 2.0 + 0.1))
    # below the edge with kappa w < 0 the map sharpens while the residual decays
    path = trajectory(0.5, -0.3, 1.0, 40)
    assert path["x"].iloc[-1] > path["x"].iloc[0] and abs(path["w"].iloc[-1]) < 1e-3
    # past the edge a fitted mode is unstable: |w| grows by |1 - x| per step, flipping sign
    past = trajectory(2.2, 1e-6, 0.5, 10)
    assert (np.sign(past["w"]).diff().dropna() != 0).all()
    assert abs(past["w"].iloc[-1]) > 1e-6 * 1.19**10


def test_reduced_variables_and_budget_on_hostile_tables():
    assert reduced_variables(pd.DataFrame({"step": [0, 1]}), 1.0) is None  # columns missing
    frame = pd.DataFrame({"step": [0, 1, 2, 4, 5], "second_order/ntk_lambda": [1, 1.1, 1.2, 1.3,
                                                                               "x"],
                          "second_order/zeta": [0, 0, 0, 0, 0],
                          "second_order/a": [0, 0, 0, 0, 0], "second_order/b": [0, 0, 0, 0, 0],
                          "second_order/loss": [1, 1, 1, np.inf, 1]})
    v = reduced_variables(frame, 1.0)
    assert list(v["step"]) == [0, 1, 2]  # the non-numeric and non-finite rows dropped
    assert (v["kappa"] == 0).all()  # b = 0: the linear model
    table = budget(v)
    assert np.allclose(table["drive"], [0.1, 0.1]) and (table["top"] == 0).all()
    assert edge_numbers(v, None) == dict.fromkeys(
        ("drive_share_before_edge", "top_pull_vs_drive", "top_mode_loss_share"))
    numbers = edge_numbers(v, 2)
    assert numbers["drive_share_before_edge"] == pytest.approx(1.0)
    assert numbers["top_pull_vs_drive"] is None  # no pair of steps after the crossing


def test_refuses_a_loss_that_is_not_squared_at_setup():
    net = quadratic(4, 3, 5)
    x, labels = torch.randn(6, 4, dtype=torch.float64), torch.randint(0, 3, (6,))

    class Stub:
        global_step, callbacks, loggers, optimizers = 0, [], [], []

    def labelled(outputs, targets):
        return cross_entropy(outputs, targets.long())

    for probe, loss in (((x, labels.double()), labelled),  # classification
                        ((x, torch.randn(6, 3, dtype=torch.float64)),
                         lambda o, t: 2 * squared(o, t))):  # squared, other normalization
        with pytest.raises(ValueError, match="needs the squared loss"):
            SecondOrderModes(probe=probe, loss_fn=loss).on_fit_start(Stub(), net)
    ok = SecondOrderModes(probe=(x, torch.randn(6, 3, dtype=torch.float64)), loss_fn=squared)
    ok.on_fit_start(Stub(), net)
    assert ok.run(Stub(), net)["second_order/ntk_lambda"] > 0


def test_refuses_a_jacobian_too_big_to_hold():
    net = quadratic(4, 3, 5)
    x, y = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="18 residuals x 5 parameters = 90 entries"):
        top_mode(net, (x, y), max_jacobian_entries=89)
    assert top_mode(net, (x, y), max_jacobian_entries=90)["second_order/ntk_lambda"] > 0

    class Stub:
        global_step, callbacks, loggers, optimizers = 0, [], [], []

    with pytest.raises(ValueError, match="90 entries"):  # at setup, not once per step
        SecondOrderModes(probe=(x, y), loss_fn=squared,
                         max_jacobian_entries=89).on_fit_start(Stub(), net)
