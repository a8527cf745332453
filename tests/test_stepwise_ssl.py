"""Stepwise SSL: the augmented-pairs task, the linear encoder, the Barlow Twins loss, the
embedding-spectrum measurement (against brute force), the small-init theory (against simulated
encoders), the detector, a tiny run end to end, and the shipped sweep (slow)."""

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import fit_with
from typer.testing import CliRunner

from dynamics_lab.config import build_config
from dynamics_lab.losses import barlow_twins
from dynamics_lab.measure.embedding_spectrum import EmbeddingSpectrum
from dynamics_lab.models.linear_encoder import LinearEncoder, LinearEncoderConfig
from dynamics_lab.phenomena import detect
from dynamics_lab.phenomena.stepwise_ssl import initial_strength, ssl_half_times
from dynamics_lab.schema import ConfigError, OptimConfig, validate_section
from dynamics_lab.tasks.augmented_pairs import AugmentedPairs, AugmentedPairsConfig
from dynamics_lab.tracking.metrics import read_metrics
from dynamics_lab.tracking.rundir import RunDir
from dynamics_lab.train.module import DynamicsModule
from dynamics_lab.train.runner import execute

GAMMA = [1.0, 0.5, 0.25, 0.125, 0.0625]
SSL = {"task": {"name": "augmented_pairs", "dim": 16, "spectrum": GAMMA, "embed_dim": 4},
       "model": {"name": "linear_encoder", "init_scale": 1e-3},
       "optim": {"name": "gd", "lr": 0.05}, "trainer": {}}


def task(**kw) -> AugmentedPairs:
    return AugmentedPairs(AugmentedPairsConfig(**{"dim": 8, "spectrum": [1.0, 0.3],
                                                  "embed_dim": 3, "n_train": 48, **kw}))


# -- task, model, loss ------------------------------------------------------------------------


def test_exact_split_has_the_cross_correlation_it_promises():
    t = task()
    x, y = t.build()["train"]
    assert x.shape == (48, 2, 8) and y.shape == (48, 0)
    x = x.double()
    gamma = (x[:, 0].T @ x[:, 1] + x[:, 1].T @ x[:, 0]) / (2 * 48)
    assert torch.allclose(gamma, t.cross_correlation, atol=1e-5)
    eig, V = t.modes
    assert torch.allclose(V.T @ V, torch.eye(2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(t.cross_correlation @ V, V * eig, atol=1e-12)
    # augmentation noise widens each view but is shared by neither
    assert torch.allclose(x[:, 0].T @ x[:, 0] / 48, gamma + 0.25 * torch.eye(8, dtype=x.dtype),
                          atol=1e-5)
    a, b = task().build(), task(seed=1).build()
    assert torch.equal(a["val"][0], task().build()["val"][0])
    assert not torch.equal(a["train"][0], b["train"][0])


def test_task_refuses_what_cannot_be_built():
    with pytest.raises(ConfigError, match="exact needs n_train >= 3 dim"):
        validate_section(AugmentedPairsConfig, {"name": "augmented_pairs", "dim": 8,
                                                "n_train": 20}, "task")
    with pytest.raises(ConfigError, match="need dim >= 3"):
        validate_section(AugmentedPairsConfig, {"name": "augmented_pairs", "dim": 2,
                                                "spectrum": [1, 1, 1]}, "task")


def test_encoder_maps_each_view_and_starts_small():
    t = task(dim=400, n_train=1200)
    torch.manual_seed(0)
    model = LinearEncoder(LinearEncoderConfig(init_scale=0.1), t.spec)
    x = torch.randn(5, 2, 400)
    assert torch.allclose(model(x), x @ model.weight.T)
    assert model.weight.std().item() == pytest.approx(0.1 / 20, rel=0.1)


def test_barlow_twins_is_the_distance_of_the_cross_correlation_to_identity():
    torch.manual_seed(0)
    z = torch.randn(7, 2, 3, dtype=torch.float64)
    c = np.zeros((3, 3))
    for k in range(7):
        for i in range(3):
            for j in range(3):
                c[i, j] += (z[k, 0, i] * z[k, 1, j] + z[k, 1, i] * z[k, 0, j]).item() / 14
    assert barlow_twins(z, torch.zeros(7, 0)).item() == pytest.approx(((c - np.eye(3)) ** 2).sum())


def test_gradient_is_four_times_c_minus_identity_w_gamma():
    t = task()
    x, _ = t.build()["train"]
    W = (0.3 * torch.randn(3, 8, dtype=torch.float64)).requires_grad_()
    barlow_twins(x.double() @ W.T, None).backward()
    G = t.cross_correlation
    C = W.detach() @ G @ W.detach().T
    assert torch.allclose(W.grad, 4 * (C - torch.eye(3, dtype=C.dtype)) @ W.detach() @ G,
                          atol=1e-5)


# -- measurement ------------------------------------------------------------------------------


def test_embedding_spectrum_matches_brute_force():
    t = task()
    x, y = t.build()["train"]
    torch.manual_seed(1)
    model = LinearEncoder(LinearEncoderConfig(init_scale=1.0), t.spec)
    # Step 0 of a real one-step fit of a copy: the row measures `model`, left as it is.
    module = DynamicsModule(copy.deepcopy(model), t.spec.loss, OptimConfig(), log_every=1)
    metrics = fit_with([EmbeddingSpectrum(every=1, probe=(x, y))], module, t).rows[0]
    W = model.weight.detach().double()
    z = x.double() @ W.T
    C = (z[:, 0].T @ z[:, 1] + z[:, 1].T @ z[:, 0]).numpy() / (2 * len(x))
    eigs = sorted(np.linalg.eigvalsh(C), reverse=True)
    assert [metrics[f"embedding/eig_{i}"] for i in range(3)] == pytest.approx(eigs, abs=1e-6)
    eig, V = t.modes
    strengths = [float(eig[j] * (W @ V[:, j]).pow(2).sum()) for j in range(2)]
    assert [metrics["modes/strength_0"], metrics["modes/strength_1"]] == pytest.approx(
        strengths, rel=1e-5)
    assert "modes/strength_2" not in metrics  # only two modes have a nonzero eigenvalue
    assert sum(strengths) == pytest.approx(np.trace(C), rel=1e-5)  # exact split: all of tr C


# -- theory -----------------------------------------------------------------------------------


def simulate(init: float, lr: float, steps: int, seed: int, m: int = 16, d: int = 4):
    """Gradient descent on ||W Gamma W^T - I||^2 (the exact split's loss); half-way steps."""
    g = torch.Generator().manual_seed(seed)
    gamma = torch.tensor(GAMMA, dtype=torch.float64)
    V = torch.linalg.qr(torch.randn(m, len(GAMMA), generator=g, dtype=torch.float64))[0]
    G = V @ torch.diag(gamma) @ V.T
    W = torch.randn(d, m, generator=g, dtype=torch.float64) * init / m**0.5
    half = [None] * d
    for step in range(steps):
        q = gamma[:d] * (W @ V[:, :d]).pow(2).sum(0)
        for j in range(d):
            if half[j] is None and q[j] >= 0.5:
                half[j] = step
        W = W - lr * 4 * (W @ G @ W.T - torch.eye(d, dtype=W.dtype)) @ W @ G
    return half


def test_theory_predicts_the_simulated_step_times_on_average():
    theory = ssl_half_times(GAMMA, embed_dim=4, in_dim=16, init_scale=1e-3, lr=0.05)
    runs = np.array([simulate(1e-3, 0.05, 700, seed) for seed in range(8)], float)
    ratio = runs.mean(0) / np.array(theory)
    assert np.all(np.abs(ratio - 1) < 0.1), ratio
    assert np.all(np.diff(runs, axis=1) > 0)  # strongest first, every seed


def test_theory_is_silent_where_the_init_is_not_small_and_for_unlearnable_modes():
    times = ssl_half_times(GAMMA, embed_dim=4, in_dim=16, init_scale=1.0, lr=0.05)
    assert len(times) == 4 and times[0] is None
    assert initial_strength(1.0, 0, 4, 16, 1.0) > 1 / 81
    q0 = initial_strength(0.5, 2, 4, 16, 0.1)  # chi^2 with 2 dof: log-mean 2 exp(-gamma_E)
    assert q0 == pytest.approx(0.5 * 0.01 / 16 * 2 * math.exp(-0.5772157), rel=1e-6)


# -- detector ---------------------------------------------------------------------------------


def ssl_table(rates, steps=800, q0=1e-7, eig_only=False) -> pd.DataFrame:
    t = np.arange(steps + 1.0)
    q = [1 / (1 + (1 / q0 - 1) * np.exp(-r * t)) for r in rates]
    frame = pd.DataFrame({"step": t, "train/batch_loss": sum((1 - x) ** 2 for x in q)})
    prefix = "embedding/eig_" if eig_only else "modes/strength_"
    for j, x in enumerate(q):
        frame[f"{prefix}{j}"] = x
    return frame


def test_detector_reads_the_embedding_steps_and_puts_the_theory_beside_them():
    rates = [2 * math.log1p(4 * 0.05 * g) for g in GAMMA[:4]]
    v = detect("stepwise_ssl", ssl_table(rates), SSL)
    assert v.detected and v.spectral_steps == 4 and v.in_order, v.summary
    assert "(theory " in v.summary and "strongest mode first" in v.summary
    assert len(v.theory_times) == 4 and all(0.5 < r < 2 for r in v.theory_ratio)
    assert detect("stepwise_ssl", ssl_table(rates, eig_only=True), SSL).detected
    together = detect("stepwise_ssl", ssl_table([0.3] * 4), SSL)
    assert together.outcome == "not_detected" and together.spectral_steps == 1
    early = detect("stepwise_ssl", ssl_table(rates, steps=60), SSL)
    assert early.outcome == "undetermined" and "stopped too early" in early.reason
    swapped = detect("stepwise_ssl", ssl_table(rates[::-1]), SSL)
    assert swapped.detected and not swapped.in_order and "out of eigenvalue order" in \
        swapped.summary


# -- end to end -------------------------------------------------------------------------------


def test_tiny_run_learns_its_modes_one_at_a_time(tmp_path):
    raw = {"name": "stepwise_ssl_test",
           "task": {"name": "augmented_pairs", "dim": 8, "spectrum": [1.0, 0.4, 0.16],
                    "embed_dim": 3, "n_train": 48, "n_val": 16},
           "model": {"name": "linear_encoder", "init_scale": 1e-3},
           "optim": {"name": "gd", "lr": 0.1},
           "trainer": {"max_steps": 300, "log_every": 1, "eval_every": 300, "device": "cpu"},
           "measure": {"embedding_spectrum": {"every": 2}},
           "phenomenon": {"name": "stepwise_ssl"}, "logging": {"wandb": False}}
    run = RunDir.create(tmp_path / "run", build_config(raw).to_dict(), seed=0)
    result = execute(run, echo=lambda *a: None)
    assert result.status == "completed", result.error
    v = result.verdict
    assert v["detected"] and v["spectral_steps"] == 3, v["summary"]
    assert all(abs(r - 1) < 0.25 for r in v["theory_ratio"]), v["theory_ratio"]
    metrics = read_metrics(run.path)
    assert metrics["train/loss"].dropna().iloc[-1] < 1e-3  # C reached the identity


@pytest.mark.slow
def test_shipped_sweep_is_stepwise_from_small_init_only(tmp_path):
    from dynamics_lab.cli import app

    result = CliRunner().invoke(app, ["run", "stepwise_ssl", "--sweep", "--workers", "1",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    verdicts = {p.parent.name: json.loads(p.read_text()) for p in tmp_path.rglob("verdict.json")}
    assert len(verdicts) == 12
    for run_id, v in verdicts.items():
        if run_id.startswith("init_scale=1.0"):
            assert v["outcome"] == "not_detected", v["summary"]
        else:
            assert v["detected"] and v["spectral_steps"] == 4 and v["in_order"], v["summary"]
            assert all(abs(r - 1) < 0.25 for r in v["theory_ratio"]), (run_id, v["theory_ratio"])
