"""The top-NTK-mode measurement against explicit Jacobians and output Hessians, and the
two-variable map against GD itself where it is exact (one residual)."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import Batches, Held, fit_with
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
    measured, expected = top_mode(model, (x, y))[0], brute_force(model, x, y)
    assert measured.keys() == expected.keys()
    for key, value in expected.items():
        assert measured[key] == pytest.approx(float(value.detach()), rel=1e-8, abs=1e-12), key
    assert measured["second_order/zeta"] >= 0
    assert measured["second_order/b"] * measured["second_order/ntk_lambda"] >= 0
    # Cauchy-Schwarz: (j . q)^2 <= |j|^2 |q|^2, i.e. a^2 <= b (kappa is a cosine)
    assert measured["second_order/a"] ** 2 <= measured["second_order/b"] * (1 + 1e-12)


def gd_rows(net, x, y, lr, steps):
    """The measurement at every step of a plain GD run, as a metrics table."""
    rows, previous = [], None
    for t in range(steps):
        metrics, previous = top_mode(net, (x, y), previous=previous)
        rows.append({"step": t, **metrics})
        net.zero_grad()
        squared(net(x), y).backward()
        with torch.no_grad():
            net.theta -= lr * net.theta.grad
    return pd.DataFrame(rows)


def test_the_map_is_gd_exactly_for_one_residual():
    """One example, one output: the residual is the top mode, so x and |w| follow the map."""
    net = quadratic(5, 1, 6, curvature=1.0, seed=2)
    x, y = torch.randn(1, 5, dtype=torch.float64), torch.full((1, 1), 2.0, dtype=torch.float64)
    lr = 0.9 / top_mode(net, (x, y))[0]["second_order/ntk_lambda"]  # x0 = 0.9
    rows = gd_rows(net, x, y, lr, 12)
    v = reduced_variables(rows, lr)
    x_next, w_next = step(v["x"].to_numpy()[:-1], v["w"].to_numpy()[:-1],
                          v["kappa"].to_numpy()[:-1])
    assert np.allclose(x_next, v["x"].to_numpy()[1:], rtol=1e-9)
    # w' is the new residual in the old step's curvature units (b moves with j): compare zeta
    zeta = rows["second_order/zeta"].to_numpy()
    big = zeta[:-1] > 1e-4  # below that, r = f - y cancels to a few digits in float64
    assert big.sum() >= 5
    assert np.allclose((np.abs(w_next) / v["w"].to_numpy()[:-1])[big], (zeta[1:] / zeta[:-1])[big],
                       rtol=1e-7)
    assert v["x"].max() > 1.0 and v["w"].max() > 0.05  # not a trivial stretch of the dynamics
    table = budget(v)
    assert len(table) == 11 and np.allclose(table["top"], table["dx"], rtol=1e-9)
    assert np.allclose(table[["others", "turn"]], 0, atol=1e-9)  # one residual: nothing else
    assert np.allclose(v["top_share"], 1)  # the whole loss is the top mode's


def test_the_map_is_the_top_modes_own_step_with_many_residuals():
    """Many residuals: a GD step driven by the top mode's residual alone moves that mode's
    curvature u . K u and its residual exactly as the map says; the full step does not."""
    net = quadratic(6, 2, 9, curvature=1.5, seed=4)
    x, y = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    metrics, coeffs = top_mode(net, (x, y))
    lr = 1.7 / metrics["second_order/ntk_lambda"]
    call, flat = flat_function(net, lambda out: out.reshape(-1))
    jac = torch.func.jacrev(call)(flat, x)
    zeta = metrics["second_order/zeta"]
    moved = flat - lr * zeta * (jac.T @ coeffs)  # theta - eta zeta j: the top mode's own step
    jac_after = torch.func.jacrev(call)(moved, x)
    v = reduced_variables(pd.DataFrame([{"step": 0, **metrics}]), lr)
    x_map, w_map = step(v["x"].to_numpy(), v["w"].to_numpy(), v["kappa"].to_numpy())
    assert lr * float((jac_after.T @ coeffs).pow(2).sum()) == pytest.approx(x_map[0], rel=1e-9)
    zeta_after = float(coeffs @ (call(moved, x) - y.reshape(-1)))
    assert zeta_after / zeta == pytest.approx(w_map[0] / v["w"].iloc[0], rel=1e-9)
    assert abs(w_map[0]) > 1e-2 and abs(x_map[0] / v["x"].iloc[0] - 1) > 1e-2  # a real step
    # the measurement's previous-mode value is that u . K u, here after the full GD step
    with torch.no_grad():
        net.theta -= lr * torch.func.grad(lambda t: squared(torch.func.functional_call(
            net, {"theta": t}, (x,)), y))(net.theta)
    after, _ = top_mode(net, (x, y), previous=coeffs)
    jac_full_step = torch.func.jacrev(call)(net.theta.detach().clone(), x)
    expected = float((jac_full_step.T @ coeffs).pow(2).sum())
    assert after["second_order/ntk_lambda_prev_mode"] == pytest.approx(expected, rel=1e-10)
    assert after["second_order/ntk_lambda_prev_mode"] <= after["second_order/ntk_lambda"]
    assert expected != pytest.approx(lr * x_map[0], rel=1e-3)  # the other residuals moved it


def test_repeated_top_eigenvalue_takes_the_residuals_direction():
    """K = I / 2 on two residuals: any unit u is an eigenvector; the one GD sees is r's."""
    net = QuadraticModel(QuadraticConfig(n_params=2, curvature=0.0),
                         TaskSpec((1,), 2, "squared")).double()
    with torch.no_grad():
        net.jacobian.copy_(torch.eye(2).reshape(1, 2, 2))  # f = theta: J = I, K = I / n
    x = torch.ones(2, 1, dtype=torch.float64)  # two examples, phi = 1
    # K = [[I, I], [I, I]] / 2 on (example, output): eigenvalue 1 twice, on (e_o, e_o) / sqrt 2
    for y, share in (([[1.0, 0.0], [1.0, 0.0]], 1.0), ([[0.0, 1.0], [0.0, 1.0]], 1.0),
                     ([[0.6, 0.8], [0.6, 0.8]], 1.0), ([[1.0, 0.0], [0.0, 0.0]], 0.5)):
        y = torch.tensor(y, dtype=torch.float64)
        metrics, _ = top_mode(net, (x, y))
        assert metrics["second_order/ntk_lambda"] == pytest.approx(1.0)
        assert metrics["second_order/ntk_lambda_2"] == pytest.approx(1.0)
        # all of the residual's part in the top eigenspace is on the top mode, whatever its
        # direction there (an arbitrary eigenvector would give 0 for some of these)
        assert 0.5 * metrics["second_order/zeta"] ** 2 == pytest.approx(
            share * metrics["second_order/loss"], rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_repeated_top_eigenvalue_in_both_gram_branches(dtype):
    """Two residuals, three parameters (the J J^T branch) and six residuals, two parameters
    (the J^T J branch), each with an exactly repeated top NTK eigenvalue; in float32 the
    rounding splits it, and the tolerance still treats it as one eigenspace."""
    for rows, params in ((2, 3), (6, 2)):
        torch.manual_seed(rows)
        q, _ = torch.linalg.qr(torch.randn(max(rows, params), max(rows, params),
                                           dtype=torch.float64))
        jac = q[:rows, :params]  # orthonormal rows (J J^T = I) or columns (J^T J = I)
        net = nn.Linear(params, 1, bias=False).to(dtype)
        x = jac.to(dtype)  # f = x w: the Jacobian is x itself
        y = torch.randn(rows, 1, dtype=torch.float64)
        with torch.no_grad():
            net.weight.zero_()
        metrics, coeffs = top_mode(net, (x, y.to(dtype)))
        gram = jac.T @ jac if rows > params else jac @ jac.T
        top = torch.linalg.eigvalsh(gram / rows)
        assert metrics["second_order/ntk_lambda"] == pytest.approx(float(top[-1]), rel=1e-5)
        # the residual's part in the top eigenspace, all of it on u
        basis = torch.linalg.eigh(jac @ jac.T / rows)[1][:, -min(rows, params):]
        expected = float((basis.T @ y.reshape(-1)).pow(2).sum()) / (2 * rows)
        if rows > params:  # K has rank 2 < 6 with two equal eigenvalues: project on both
            assert top[-1] == pytest.approx(float(top[-2]), rel=1e-9)
        assert 0.5 * metrics["second_order/zeta"] ** 2 == pytest.approx(expected, rel=1e-5)


def test_outputs_linear_in_the_parameters_have_no_curvature():
    torch.manual_seed(0)
    net = nn.Linear(3, 2).double()
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    metrics, _ = top_mode(net, (x, y))
    assert metrics["second_order/a"] == 0 and metrics["second_order/b"] == 0
    assert metrics["second_order/ntk_lambda"] > 0


@pytest.mark.parametrize("layer", [nn.Dropout(0.1), nn.BatchNorm1d(4)])
def test_refuses_a_random_or_batch_coupled_forward(layer):
    net = nn.Sequential(nn.Linear(3, 4), layer, nn.Tanh(), nn.Linear(4, 1)).double()
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)

    with pytest.raises(ValueError, match="deterministic per-example forward"):
        fit_with([SecondOrderModes(probe=(x, y), loss_fn=squared)], Held(net, squared),
                 Batches(x, y))
    net.eval()  # the same layers in eval mode are deterministic and per-example
    rows = fit_with([SecondOrderModes(probe=(x, y), loss_fn=squared)], Held(net, squared),
                    Batches(x, y)).rows
    assert rows[0]["second_order/ntk_lambda"] > 0


def test_refuses_noise_inside_forward():
    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(3, 1)

        def forward(self, x):
            return self.layer(x) + 0.01 * torch.randn(len(x), 1, dtype=x.dtype)

    x, y = torch.randn(8, 3), torch.randn(8, 1)
    with pytest.raises(ValueError, match="deterministic forward"):
        fit_with([SecondOrderModes(probe=(x, y), loss_fn=squared)], Held(Noisy(), squared),
                 Batches(x, y))


def test_previous_mode_round_trips_through_the_state_dict():
    net = quadratic(6, 2, 9, curvature=1.5, seed=4)
    x, y = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)

    class Stub:
        global_step, callbacks, loggers, optimizers = 0, [], [], []

    first = SecondOrderModes(probe=(x, y), loss_fn=squared)
    first.run(Stub(), net)
    state = first.state_dict()
    with torch.no_grad():
        net.theta.add_(0.1)
    Stub.global_step = 1
    expected = first.run(Stub(), net)
    resumed = SecondOrderModes(probe=(x, y), loss_fn=squared)
    resumed.load_state_dict(state)
    got = resumed.run(Stub(), net)
    assert "second_order/ntk_lambda_prev_mode" in got and "second_order/probe_size" not in got
    assert got["second_order/ntk_lambda_prev_mode"] == expected["second_order/ntk_lambda_prev_mode"]


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


def synthetic(steps, lam, zeta, a, b, previous, loss):
    return pd.DataFrame({"step": steps, "second_order/ntk_lambda": lam,
                         "second_order/zeta": zeta, "second_order/a": a, "second_order/b": b,
                         "second_order/ntk_lambda_prev_mode": previous,
                         "second_order/loss": loss})


def test_budget_and_edge_numbers_by_hand():
    # eta = 1; kappa = a / sqrt(b) = 0.5, w = sqrt(b) zeta: top = x (w^2 - 2 kappa w)
    v = reduced_variables(synthetic(
        steps=[0, 1, 2, 3, 5, 6], lam=[1.0, 1.5, 2.0, 1.9, 1.95, 2.0],
        zeta=[0.0, 0.0, 0.1, 0.2, 0.1, 0.1], a=[0.5] * 6, b=[1.0] * 6,
        previous=[np.nan, 1.4, 1.9, 1.95, 1.9, 1.98], loss=[1.0, 0.5, 0.02, 0.04, 0.01, 0.005]),
        1.0)
    assert list(v["kappa"]) == [0.5] * 6 and list(v["w"]) == [0.0, 0.0, 0.1, 0.2, 0.1, 0.1]
    table = budget(v)
    assert list(table["step"]) == [0, 1, 2, 5]  # 3 -> 5 is not one step
    top = [0.0, 0.0, 2.0 * (0.01 - 0.1), 1.95 * (0.01 - 0.1)]
    assert np.allclose(table["top"], top)
    assert np.allclose(table["dx"], [0.5, 0.5, -0.1, 0.05])
    assert np.allclose(table["turn"], [0.1, 0.1, -0.05, 0.02])  # lambda_max - u_prev . K u_prev
    assert np.allclose(table["others"], table["dx"] - table["top"] - table["turn"])
    numbers = edge_numbers(v, reach=0.95)  # x >= 1.9 first at step 2
    assert numbers["edge_crossing_step"] == 2
    assert numbers["others_share_before_edge"] == pytest.approx((0.4 + 0.4) / 1.0)
    assert numbers["top_mode_loss_share"] == pytest.approx(0.5)  # median of .25 .5 .5 1
    after = table[table["step"] >= 2]
    push = after["others"].sum() + after["turn"].sum()
    assert numbers["turn_share_after_edge"] == pytest.approx(-0.03 / push)
    assert numbers["map_r2_after_edge"] is None  # two pairs after the crossing: too few
    assert edge_numbers(v, reach=1.01)["edge_crossing_step"] is None  # never reached 2.02


def test_map_r2_is_none_when_the_top_mode_is_fit():
    steps, lam = np.arange(40), np.linspace(1.9, 1.95, 40)  # settled just below the edge
    previous = np.r_[np.nan, lam[1:] - 1e-4]
    v = reduced_variables(synthetic(steps, lam, [0.0] * 40, [0.5] * 40, [1.0] * 40, previous,
                                    [1e-3] * 40), 1.0)
    numbers = edge_numbers(v)
    assert numbers["edge_crossing_step"] == 0 and numbers["top_mode_loss_share"] == 0
    assert numbers["map_r2_after_edge"] is None  # nothing for the map to explain


def test_map_r2_measures_how_much_of_the_top_modes_change_the_map_explains():
    rng = np.random.default_rng(0)
    steps = np.arange(60)
    lam = np.full(60, 2.0)
    zeta = np.abs(rng.normal(0.1, 0.05, 60))
    x = lam
    top = x * (zeta**2 - 2 * 0.5 * zeta)
    for noise, low, high in ((0.0, 0.999, 1.0), (1.0, 0.3, 0.7), (3.0, -0.2, 0.3)):
        others = noise * rng.normal(0, top.std(), 60)
        previous = np.r_[np.nan, (x + top + others)[:-1]]  # u_prev . K u_prev = x + top + others
        v = reduced_variables(synthetic(steps, lam, zeta, [0.5] * 60, [1.0] * 60, previous,
                                        [1.0] * 60), 1.0)
        r2 = edge_numbers(v)["map_r2_after_edge"]
        assert low <= r2 <= high, (noise, r2)


def test_reduced_variables_on_hostile_tables():
    assert reduced_variables(pd.DataFrame({"step": [0, 1]}), 1.0) is None  # columns missing
    frame = synthetic([0, 1, 2, 4, 5], [1, 1.1, 1.2, 1.3, "x"], [0] * 5, [0] * 5, [0] * 5,
                      [np.nan, 1.1, 1.2, 1.3, 1.4], [1, 1, 1, np.inf, 1])
    v = reduced_variables(frame, 1.0)
    assert list(v["step"]) == [0, 1, 2]  # the non-numeric and non-finite rows dropped
    assert (v["kappa"] == 0).all()  # b = 0: outputs linear in the parameters
    assert np.allclose(budget(v)["others"], [0.1, 0.1])
    assert reduced_variables(frame.drop(columns=["second_order/ntk_lambda_prev_mode"]),
                             1.0)["x_prev_mode"].isna().all()  # older runs: no turn split
    assert budget(reduced_variables(frame.drop(columns=["second_order/ntk_lambda_prev_mode"]),
                                    1.0)).empty


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
    assert top_mode(net, (x, y), max_jacobian_entries=90)[0]["second_order/ntk_lambda"] > 0

    class Stub:
        global_step, callbacks, loggers, optimizers = 0, [], [], []

    with pytest.raises(ValueError, match="90 entries"):  # at setup, not once per step
        SecondOrderModes(probe=(x, y), loss_fn=squared,
                         max_jacobian_entries=89).on_fit_start(Stub(), net)
