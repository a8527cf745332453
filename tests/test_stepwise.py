"""Stepwise learning: the low-rank task, the deep linear model, the modes callback, the theory, the
loss-curve staircase detector and the spectral verdict (both outcomes), end to end in-process."""

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import Batches, fit_with
from torch import nn

from dynamics_lab.config import build_config
from dynamics_lab.measure.modes import Modes, end_to_end
from dynamics_lab.models.linear import DeepLinear, DeepLinearConfig
from dynamics_lab.phenomena import detect
from dynamics_lab.phenomena.stepwise import initial_strength, loss_steps, theory_half_times
from dynamics_lab.schema import OptimConfig
from dynamics_lab.tasks.low_rank_regression import LowRankRegression, LowRankRegressionConfig
from dynamics_lab.tracking.metrics import read_metrics
from dynamics_lab.tracking.rundir import RunDir
from dynamics_lab.train.module import DynamicsModule
from dynamics_lab.train.runner import execute

S = [3.0, 1.0, 0.3]


def tiny_run(tmp_path, init_scale: float, steps: int, depth: int = 2):
    raw = {
        "name": "stepwise_test",
        "task": {"name": "low_rank_regression", "in_dim": 6, "out_dim": 6, "singular_values": S,
                 "n_train": 64, "n_val": 32},
        "model": {"name": "deep_linear", "depth": depth, "width": 12, "init_scale": init_scale},
        "optim": {"name": "gd", "lr": 0.1},
        "trainer": {"max_steps": steps, "log_every": 1, "eval_every": steps, "device": "cpu"},
        "measure": {"modes": {"every": 1}},
        "phenomenon": {"name": "stepwise"},
        "logging": {"wandb": False},
    }
    config = build_config(raw)
    run = RunDir.create(tmp_path / f"run_{init_scale}", config.to_dict(), seed=0)
    result = execute(run, echo=lambda *a: None)
    assert result.status == "completed", result.error
    return result.verdict, read_metrics(run.path)


# -- task and model --------------------------------------------------------------------------


def test_task_is_deterministic_white_and_exposes_its_teacher():
    config = LowRankRegressionConfig(in_dim=5, out_dim=4, singular_values=[2.0, 0.5], n_train=50)
    a, b = LowRankRegression(config).build(), LowRankRegression(config).build()
    assert all(torch.equal(a[s][i], b[s][i]) for s in ("train", "val") for i in (0, 1))
    other = LowRankRegression(config.model_copy(update={"seed": 1})).build()
    assert not torch.equal(a["train"][0], other["train"][0])
    task = LowRankRegression(config)
    U, S_, V = task.teacher
    assert torch.allclose(U.T @ U, torch.eye(2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(V.T @ V, torch.eye(2, dtype=torch.float64), atol=1e-12)
    x, y = a["train"]
    assert torch.allclose(x.T.double() @ x.double() / 50, torch.eye(5, dtype=torch.float64),
                          atol=1e-5)
    assert torch.allclose(y.double(), x.double() @ task.teacher_map.T, atol=1e-5)
    with pytest.raises(ValueError):
        LowRankRegressionConfig(in_dim=2, out_dim=4, singular_values=[1, 1, 1])


def test_deep_linear_init_scale_is_the_per_mode_gain():
    spec = LowRankRegression(LowRankRegressionConfig(in_dim=64, out_dim=64)).spec
    torch.manual_seed(0)
    model = DeepLinear(DeepLinearConfig(depth=3, width=256, init_scale=0.1), spec)
    v = torch.nn.functional.normalize(torch.randn(64), dim=0)
    assert abs(model.layers[0].weight @ v).norm().item() == pytest.approx(0.1, rel=0.15)
    x = torch.randn(7, 64)
    assert torch.allclose(model(x), x @ model.end_to_end().T, atol=1e-6)
    assert all(layer.bias is None for layer in model.layers)


# -- modes callback ---------------------------------------------------------------------------


def measured(callback, model, datamodule):
    """Step 0 of a real one-step fit of a copy of `model`: the row measures `model` itself."""
    module = DynamicsModule(copy.deepcopy(model), "squared", OptimConfig(), log_every=1)
    return fit_with([callback], module, datamodule).rows[0]


def test_modes_callback_logs_hand_computed_projections():
    task = LowRankRegression(LowRankRegressionConfig(in_dim=5, out_dim=4, singular_values=[2, 1]))
    torch.manual_seed(1)
    model = DeepLinear(DeepLinearConfig(depth=2, width=3, init_scale=1.0), task.spec)
    metrics = measured(Modes(every=1), model, task)
    W = (model.layers[1].weight @ model.layers[0].weight).detach().double()
    U, _, V = task.teacher
    for i in range(2):
        hand = sum(U[o, i] * W[o, j] * V[j, i] for o in range(4) for j in range(5))
        assert metrics[f"modes/strength_{i}"] == pytest.approx(float(hand), abs=1e-7)
        assert metrics[f"modes/sv_{i}"] == pytest.approx(float(torch.linalg.svdvals(W)[i]),
                                                         abs=1e-7)
    assert "modes/sv_2" not in metrics  # as many singular values as teacher modes by default


def test_end_to_end_falls_back_to_the_product_of_linear_layers():
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False))
    assert torch.allclose(end_to_end(net), net[1].weight @ net[0].weight)
    data = Batches(torch.randn(4, 3), torch.randn(4, 2))  # a user's datamodule: no teacher
    metrics = measured(Modes(every=1, n_singular=2), net, data)
    measured_keys = {k for k in metrics if k.startswith("modes/")}  # beside the batch loss
    assert measured_keys == {"modes/sv_0", "modes/sv_1"}  # no teacher, no strengths


# -- theory -----------------------------------------------------------------------------------


def test_two_layer_theory_matches_the_balanced_gradient_descent_recursion():
    # Balanced, aligned mode a = b: a <- a + lr a (s - a^2), m = a^2, started at m0 = u0^2 / 2.
    lr, u0 = 0.1, 0.01
    for s, predicted in zip(S, theory_half_times(S, lr, u0, depth=2)):
        a, k = u0 / math.sqrt(2), 0
        while a * a < s / 2:
            a, k = a + lr * a * (s - a * a), k + 1
        assert abs(k - predicted) <= 1.5


def test_deep_theory_integrates_the_balanced_ode_and_depth_one_has_no_steps():
    lr, u0, s = 0.01, 0.1, 1.0
    a, k = (u0 ** 3 / 2) ** (1 / 3), 0  # depth 3, balanced: m = a^3, da = lr a^2 (s - a^3)
    while a ** 3 < s / 2:
        a, k = a + lr * a * a * (s - a ** 3), k + 1
    assert theory_half_times([s], lr, u0, depth=3)[0] == pytest.approx(k, rel=0.02)
    flat = theory_half_times(S, 0.1, 0.01, depth=1)
    assert flat[0] == flat[1] == flat[2] == pytest.approx(math.log(2) / -math.log(0.9))
    assert theory_half_times([0.001], 0.1, 1.0, depth=2) == [None]  # init already past half


def simulated_half_times(depth, u0, s, lr, width, dim, seed):
    """Gradient descent on a deep linear net (the model's init) with loss 0.5 ||W - W*||_F^2:
    the step at which each teacher mode's strength u_i^T W v_i first reaches s_i / 2."""
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:, :len(s)]
    V = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:, :len(s)]
    target = U @ np.diag(s) @ V.T
    dims = [dim] + [width] * (depth - 1) + [dim]
    layers = [rng.normal(0, u0 / math.sqrt(width), (b, a)) for a, b in zip(dims, dims[1:])]
    found, step = [None] * len(s), 0
    while None in found:
        prefix = [np.eye(dim)]
        for w in layers:
            prefix.append(w @ prefix[-1])
        strength = np.einsum("ik,ij,jk->k", U, prefix[-1], V)
        found = [f if f is not None or m < si / 2 else step
                 for f, m, si in zip(found, strength, s)]
        residual, suffix, grads = prefix[-1] - target, np.eye(dim), [None] * depth
        for layer in reversed(range(depth)):
            grads[layer] = suffix.T @ residual @ prefix[layer].T
            suffix = suffix @ layers[layer]
        for w, g in zip(layers, grads):
            w -= lr * g
        step += 1
    return found


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_theory_half_times_match_simulated_deep_linear_networks(depth):
    # Seed-averaged over 16 random inits (single runs scatter ~5-10%): within 6%.
    s, lr, u0 = (3.0, 1.0), 0.1, 0.1
    runs = np.array([simulated_half_times(depth, u0, s, lr, 48, 8, seed) for seed in range(16)])
    ratio = runs.mean(0) / np.array(theory_half_times(list(s), lr, u0, depth))
    assert np.all(np.abs(ratio - 1) <= 0.06), ratio
    assert initial_strength(u0, 2) == pytest.approx(initial_strength(u0, 3) / u0) == u0 ** 2 / 2


# -- loss-curve detector ----------------------------------------------------------------------


def staircase(steps, times, widths, heights, floor=1e-3):
    steps = np.asarray(steps, float)
    with np.errstate(over="ignore"):
        return floor + sum(h / (1 + np.exp((steps - t) / w))
                           for t, w, h in zip(times, widths, heights))


def test_loss_detector_recovers_planted_steps():
    steps = np.arange(0, 20000)
    planted = [200, 2000, 9000]
    found = loss_steps(steps, staircase(steps, planted, [10, 80, 400], [5.0, 1.0, 0.2]))
    assert found.n_steps == 3 and found.staircase
    for t, p in zip(found.times, planted):
        assert abs(t - p) / p < 0.15
    assert len(found.plateaus) >= 3  # before, between, after


def test_loss_detector_sees_no_staircase_in_smooth_decays():
    steps = np.arange(0, 5000)
    exp = loss_steps(steps, np.exp(-steps / 300.0) + 1e-4)
    assert exp.n_steps == 1 and not exp.staircase
    assert loss_steps(steps, (steps + 1.0) ** -0.5).n_steps == 0
    assert loss_steps([0, 1], [1.0, 0.5]).n_steps == 0  # too short to judge


def test_loss_detector_ignores_bumps_and_float_floor_noise():
    steps = np.arange(0, 4000)
    loss = staircase(steps, [100, 1000], [5, 50], [3.0, 1.0], floor=0.0) + 1e-9
    rng = np.random.default_rng(0)
    loss = loss * np.exp(rng.normal(0, 0.3, len(steps)) * (loss < 1e-6))  # noise at the floor
    loss[300] *= 3  # one transient spike on a plateau
    assert loss_steps(steps, loss).n_steps == 2


# -- spectral verdict on synthetic curves -----------------------------------------------------


def mode_table(times, widths, targets=S, n=2000):
    steps = np.arange(n)
    frame = {"step": steps}
    for i, (t, w, s) in enumerate(zip(times, widths, targets)):
        frame[f"modes/strength_{i}"] = s / (1 + np.exp(-(steps - t) / w))
    frame["train/batch_loss"] = sum(0.5 * (s - frame[f"modes/strength_{i}"]) ** 2
                                    for i, s in enumerate(targets)) + 1e-4
    return pd.DataFrame(frame)


def test_verdict_on_separated_and_blurred_synthetic_modes():
    experiment = {"task": {"name": "low_rank_regression", "singular_values": S}}
    sharp = detect("stepwise", mode_table([100, 300, 900], [5, 15, 40]), experiment)
    assert sharp.detected and sharp.spectral_steps == 3 and sharp.in_order
    assert sharp.order == [0, 1, 2] and sharp.loss_steps == 3 and sharp.agree
    assert [round(t) for t in sharp.step_times] == [100, 300, 900]
    blurred = detect("stepwise", mode_table([100, 150, 220], [30, 40, 60]), experiment)
    assert not blurred.detected and blurred.spectral_steps == 1 and not blurred.separated
    reversed_ = detect("stepwise", mode_table([900, 300, 100], [40, 15, 5]), experiment)
    assert reversed_.detected and not reversed_.in_order and reversed_.order == [2, 1, 0]
    assert reversed_.theory_times is None  # no deep_linear model in the config: no prediction


def test_verdict_without_mode_metrics_falls_back_to_the_loss():
    frame = mode_table([100, 300, 900], [5, 15, 40])[["step", "train/batch_loss"]]
    verdict = detect("stepwise", frame)
    assert verdict.detected and verdict.spectral_steps is None and verdict.loss_steps == 3
    assert verdict.to_dict()["agree"] is None


# -- end to end: the real run path -------------------------------------------------------------


def test_small_init_learns_three_modes_in_order_at_the_theory_times(tmp_path):
    verdict, metrics = tiny_run(tmp_path, init_scale=0.01, steps=250)
    assert verdict["detected"] and verdict["spectral_steps"] == 3
    assert verdict["order"] == [0, 1, 2] and verdict["in_order"]
    assert all(0.75 <= r <= 1.25 for r in verdict["theory_ratio"]), verdict["theory_ratio"]
    assert verdict["loss_steps"] == 3 and verdict["agree"]
    assert {"modes/strength_2", "modes/sv_0", "train/batch_loss"} <= set(metrics)


def test_large_init_is_not_stepwise(tmp_path):
    verdict, _ = tiny_run(tmp_path, init_scale=1.0, steps=150)
    assert not verdict["detected"] and not verdict["separated"]
    assert verdict["spectral_steps"] < 3
