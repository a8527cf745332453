"""Hessian rank: the dense Hessian and the counts against brute force, Singh et al.'s closed form
against exact ranks of deep linear networks, the SLQ estimate against the exact count, the
callback in a real run, and the detector's edge cases."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import Batches, Held, fit_with
from typer.testing import CliRunner

from dynamics_lab.config import load_experiment
from dynamics_lab.linalg.hessian_rank import (
    count_above,
    dense_hessian,
    dense_rank,
    matrix_rank,
    output_jacobian,
    slq_rank,
)
from dynamics_lab.linalg.hvp import hessian_vector_product
from dynamics_lab.losses import squared
from dynamics_lab.measure.hessian_rank import HessianRank
from dynamics_lab.models.linear import DeepLinear, DeepLinearConfig
from dynamics_lab.phenomena import detect
from dynamics_lab.phenomena.hessian_rank import LinearNetwork, network_from_config
from dynamics_lab.tasks.base import TaskSpec
from dynamics_lab.tracking.metrics import read_metrics
from dynamics_lab.tracking.rundir import RunDir
from dynamics_lab.train.runner import execute


def linear_net(widths, n, seed=0, dtype=torch.float64):
    """A deep linear net with layer widths `widths` (init scale 1), n Gaussian inputs, targets."""
    torch.manual_seed(seed)
    spec = TaskSpec((widths[0],), widths[-1], "squared")
    config = DeepLinearConfig(depth=len(widths) - 1, width=widths[1] if len(widths) > 2 else 1,
                              init_scale=1.0)
    model = DeepLinear(config, spec).to(dtype)
    hidden = widths[1:-1]
    if hidden and len(set(hidden)) > 1:  # unequal hidden widths: build the layers by hand
        model.layers = torch.nn.ModuleList(
            torch.nn.Linear(a, b, bias=False, dtype=dtype) for a, b in zip(widths, widths[1:]))
    x = torch.randn(n, widths[0], dtype=dtype)
    y = torch.randn(n, widths[-1], dtype=dtype)
    return model, x, y


def brute_force_hessian(model, x, y):
    """torch.autograd.functional.hessian of the loss written out by hand over the flat weights."""
    shapes = [layer.weight.shape for layer in model.layers]
    flat = torch.cat([layer.weight.detach().reshape(-1) for layer in model.layers])

    def loss(v):
        h, i = x, 0
        for shape in shapes:
            size = shape[0] * shape[1]
            h = h @ v[i:i + size].reshape(shape).T
            i += size
        return 0.5 * ((h - y) ** 2).sum(1).mean()

    return torch.autograd.functional.hessian(loss, flat)


def test_dense_hessian_and_jacobian_match_brute_force():
    model, x, y = linear_net([4, 5, 3], 7)
    assert torch.allclose(dense_hessian(model, squared, (x, y)), brute_force_hessian(model, x, y),
                          atol=1e-12)
    w1, w2 = model.layers[0].weight.detach(), model.layers[1].weight.detach()
    jac = output_jacobian(model, x)  # (7 x 3, 15 + 15)
    # d f_i(x_n) / d W2[i, j] = (W1 x_n)_j; d f_i / d W1[j, k] = W2[i, j] x_nk
    assert jac.shape == (21, 35)
    assert torch.allclose(jac.reshape(7, 3, 35)[:, 1, 20 + 5:20 + 10], x @ w1.T, atol=1e-12)
    assert torch.allclose(jac.reshape(7, 3, 35)[2, 0, :20],
                          torch.outer(w2[0], x[2]).reshape(-1), atol=1e-12)


def test_counts_are_exact_on_matrices_of_known_rank():
    g = torch.Generator().manual_seed(0)
    u = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=torch.float64))[0]
    kept = [5.0, 4.0, 3.0, 2.0, 1.5, 1.0, 0.7, 0.5, 0.3, -0.4, -1.0, -2.0]
    spectrum = torch.tensor(kept + [0.0] * 18, dtype=torch.float64)
    h = u @ torch.diag(spectrum) @ u.T
    r = dense_rank(h, 1e-8)
    assert r.rank == 12 and r.dim == 30 and r.scale == pytest.approx(5.0)
    assert r.smallest_kept > 1e-3 and r.largest_dropped < 1e-12
    low = torch.randn(9, 4, generator=g, dtype=torch.float64) @ torch.randn(
        4, 20, generator=g, dtype=torch.float64)
    assert matrix_rank(low).rank == 4
    assert matrix_rank(low.float()).rank > 4  # float32 round-off fills the gap: why float64
    assert count_above(torch.tensor([1.0, 0.5, 1e-3]), 1e-2).rank == 2
    assert count_above(torch.zeros(3), 1e-8).rank == 0


# (widths, examples): bottlenecks, unequal hidden widths, fewer examples than input dimensions.
CASES = [([5, 4, 3], 50), ([5, 3, 4], 50), ([6, 2, 5], 50), ([3, 7, 7], 50), ([5, 4, 3, 2], 50),
         ([4, 3, 6, 5], 50), ([7, 3, 5, 4, 6], 60), ([5, 8, 2, 6], 50), ([10, 8, 6], 5),
         ([6, 8, 8, 10], 3), ([4, 6], 20)]


@pytest.mark.parametrize("widths,n", CASES, ids=[f"{w}-n{n}" for w, n in CASES])
def test_closed_form_equals_the_exact_rank(widths, n):
    model, x, y = linear_net(widths, n)
    net = LinearNetwork((min(widths[0], n), *widths[1:]), widths[0])
    assert net.n_params == sum(p.numel() for p in model.parameters())
    assert dense_rank(brute_force_hessian(model, x, y)).rank == net.hessian_rank
    assert matrix_rank(output_jacobian(model, x)).rank == net.outer_rank


def test_hessian_is_heavily_rank_deficient_for_wide_deep_networks():
    net = LinearNetwork((10, 32, 32, 32, 2), 10)
    assert net.hessian_rank == 392 and net.n_params == 2432 and net.outer_rank == 20


def test_slq_estimate_agrees_with_the_exact_count():
    model, x, y = linear_net([10, 16, 16, 6], 64)
    exact = dense_rank(dense_hessian(model, squared, (x, y))).rank
    assert exact == 372
    hvp = hessian_vector_product(model, squared, (x, y))
    estimate = slq_rank(hvp, hvp.dim, n_draws=8, n_iter=150, rtol=1e-3)
    assert abs(estimate.rank - exact) <= max(0.03 * exact, 3 * estimate.stderr)
    assert 0 < estimate.stderr < 20
    # A Krylov space that closes (n_iter >= distinct eigenvalues + 1) gives exact quadratures.
    g = torch.Generator().manual_seed(1)
    h = torch.diag(torch.tensor([3.0, 3.0, -1.0] + [0.0] * 7, dtype=torch.float64))
    small = slq_rank(lambda v: h @ v, 10, n_draws=200, n_iter=10, rtol=1e-6, generator=g)
    assert small.rank == pytest.approx(3.0, abs=3 * small.stderr + 0.1)


def test_callback_measures_a_float32_model_in_float64_and_leaves_it_alone():
    model, x, y = linear_net([6, 8, 8, 3], 32, dtype=torch.float32)
    before = [p.detach().clone() for p in model.parameters()]
    callback = HessianRank(method="dense", probe=(x, y), loss_fn=squared)
    metrics = fit_with([callback], Held(model, squared), Batches(x, y)).rows[0]  # step 0
    net = LinearNetwork((6, 8, 8, 3), 6)
    assert metrics["hessian_rank/rank"] == net.hessian_rank
    assert metrics["hessian_rank/outer_rank"] == net.outer_rank
    assert metrics["hessian_rank/n_params"] == net.n_params and metrics["hessian_rank/exact"] == 1
    assert metrics["hessian_rank/largest_dropped"] < 1e-12 < 1e-6 < metrics[
        "hessian_rank/smallest_kept"]
    slq = fit_with([HessianRank(method="slq", probe=(x, y), loss_fn=squared)],
                   Held(model, squared), Batches(x, y)).rows[0]
    assert slq["hessian_rank/exact"] == 0 and "hessian_rank/outer_rank" not in slq
    assert abs(slq["hessian_rank/rank"] - net.hessian_rank) < 0.1 * net.hessian_rank
    assert all(p.dtype == torch.float32 and torch.equal(p, b)
               for p, b in zip(model.parameters(), before))


def test_a_real_run_logs_the_predicted_rank_and_is_detected(tmp_path):
    config = load_experiment("hessian_rank", overrides=[
        "model.width=8", "model.depth=3", "trainer.max_steps=20", "trainer.eval_every=10",
        "measure.hessian_rank.every=10", "trainer.device=cpu", "logging.wandb=false"])
    run = RunDir.create(tmp_path / "run", config.to_dict(), seed=0)
    result = execute(run, echo=lambda *a: None)
    assert result.status == "completed", result.error
    ranks = read_metrics(run.path)[["step", "hessian_rank/rank"]].dropna()
    assert ranks["step"].tolist() == [0, 10, 20]
    network, _ = network_from_config(config.to_dict())
    assert (ranks["hessian_rank/rank"] == network.hessian_rank).all()
    assert result.verdict["detected"] and result.verdict["predicted_rank"] == 76
    assert result.verdict["measured_outer_rank"] == network.outer_rank == 20


EXPERIMENT = {"model": {"name": "deep_linear", "depth": 3, "width": 16},
              "task": {"name": "low_rank_regression", "in_dim": 10, "out_dim": 2, "n_train": 64},
              "measure": {"hessian_rank": {"probe_size": 64}}}


def table(ranks, n_params=448, exact=1.0, stderr=0.0):
    steps = np.arange(len(ranks)) * 25
    return pd.DataFrame({"step": steps, "hessian_rank/rank": ranks,
                         "hessian_rank/n_params": n_params, "hessian_rank/exact": exact,
                         "hessian_rank/rank_stderr": stderr})


def test_detector_exact_counts_need_equality_and_slq_gets_slack():
    assert detect("hessian_rank", table([140] * 4), EXPERIMENT).detected
    off = detect("hessian_rank", table([140, 140, 141, 140]), EXPERIMENT)
    assert off.outcome == "not_detected" and off.max_abs_error == 1 and off.matched_fraction == 0.75
    slq = detect("hessian_rank", table([142.5, 138.0, 141.0], exact=0.0, stderr=2.0), EXPERIMENT)
    assert slq.detected and slq.exact is False
    config = {**EXPERIMENT, "phenomenon": {"name": "hessian_rank", "atol": 1}}
    assert detect("hessian_rank", table([140, 140, 141, 140]), config).detected


def test_detector_undetermined_without_a_closed_form_or_with_another_parameter_count():
    mlp = {**EXPERIMENT, "model": {"name": "mlp", "depth": 2, "width": 16}}
    assert "no closed form for model.name=mlp" in detect("hessian_rank", table([140]), mlp).reason
    biased = detect("hessian_rank", table([140], n_params=480), EXPERIMENT)
    assert biased.outcome == "undetermined" and "has 448" in biased.reason
    few = {**EXPERIMENT, "measure": {"hessian_rank": {"probe_size": 4}}}  # M_0 = 4 examples
    assert detect("hessian_rank", table([140]), few).predicted_rank == 2 * 6 + 2 * 2 * 32 - 12


@pytest.mark.slow
def test_shipped_sweep_matches_the_closed_form_everywhere(tmp_path):
    from dynamics_lab.cli import app

    result = CliRunner().invoke(app, ["run", "hessian_rank", "--sweep", "--workers", "1",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    verdicts = [json.loads(p.read_text()) for p in tmp_path.rglob("verdict.json")]
    assert len(verdicts) == 12
    for v in verdicts:
        assert v["detected"] and v["exact"] and v["max_abs_error"] == 0, v["summary"]
        assert v["measured_outer_rank"] == v["predicted_outer_rank"]
    fractions = {(v["widths"][1], len(v["widths"]) - 1): v["rank_fraction"] for v in verdicts}
    assert fractions[(32, 4)] < 0.2 < 0.6 < fractions[(4, 2)]  # deficiency grows with width


def test_flat_function_never_touches_the_models_buffers():
    """BatchNorm in train mode updates running statistics on every forward: the flat function
    works on copies, so measuring (a Jacobian, a dense Hessian) leaves the model as it was."""
    from dynamics_lab.linalg.hessian_rank import flat_function

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4),
                              torch.nn.Linear(4, 1)).double()
    before = {n: b.clone() for n, b in net.named_buffers()}
    call, flat = flat_function(net, lambda out: out.reshape(-1))
    x = torch.randn(8, 3, dtype=torch.float64)
    torch.func.jacrev(call)(flat, x)
    call(flat, x)
    for name, buffer in net.named_buffers():
        assert torch.equal(buffer, before[name]), name
    net.eval()  # nothing updates buffers in eval mode: no copies needed, the same values out
    call_eval, _ = flat_function(net, lambda out: out.reshape(-1))
    assert torch.equal(call_eval(flat, x), net(x).reshape(-1))
