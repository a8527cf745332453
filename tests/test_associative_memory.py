"""Associative memories: the Zipf task, the memory model and closed-form estimators, the recall
callback (hand-checked), the power-law fit, the scaling_law verdict, and one in-process run."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import Batches, fit_with

from dynamics_lab.config import build_config
from dynamics_lab.measure.memory_recall import MemoryRecall, rank_buckets
from dynamics_lab.models.memory import (
    AssociativeMemory,
    AssociativeMemoryConfig,
    memory_predictions,
    outer_product_memory,
    random_embeddings,
    storage_weights,
)
from dynamics_lab.phenomena import detect
from dynamics_lab.phenomena.scaling_law import fit_power_law, scaling_fits, theory_exponent
from dynamics_lab.phenomena.scaling_law.fits import AXES, error_column
from dynamics_lab.schema import OptimConfig
from dynamics_lab.tasks.associative_memory import (
    AssociativeMemoryTask,
    AssociativeMemoryTaskConfig,
    zipf_probabilities,
)
from dynamics_lab.tasks.base import TaskSpec
from dynamics_lab.tracking.rundir import RunDir
from dynamics_lab.train.module import DynamicsModule
from dynamics_lab.train.runner import execute

# -- task -------------------------------------------------------------------------------------


def test_zipf_probabilities_and_sample_frequencies():
    p = zipf_probabilities(100, 1.5)
    assert p.sum().item() == pytest.approx(1.0)
    ranks = torch.arange(1, 101, dtype=torch.float64)
    assert torch.allclose(p / p[0], ranks ** -1.5)
    task = AssociativeMemoryTask(AssociativeMemoryTaskConfig(n_tokens=100, alpha=1.5,
                                                             n_samples=200_000))
    freq = task.counts() / 200_000
    sigma = (p * (1 - p) / 200_000).sqrt()
    assert ((freq[:10] - p[:10]).abs() < 4 * sigma[:10]).all()


def test_task_is_deterministic_and_val_is_every_token():
    config = AssociativeMemoryTaskConfig(n_tokens=50, n_classes=7, n_samples=300)
    a, b = AssociativeMemoryTask(config).build(), AssociativeMemoryTask(config).build()
    assert all(torch.equal(a[s][i], b[s][i]) for s in ("train", "val") for i in (0, 1))
    other = AssociativeMemoryTask(config.model_copy(update={"seed": 3})).build()
    assert not torch.equal(a["train"][0], other["train"][0])
    x, y = a["train"]
    task = AssociativeMemoryTask(config)
    assert x.shape == (300, 1) and torch.equal(y, task.targets[x[:, 0]])
    assert torch.equal(a["val"][0][:, 0], torch.arange(50))
    assert int(y.max()) < 7 and task.spec.n_tokens == 50 and task.spec.n_outputs == 7


# -- model and closed-form memories -------------------------------------------------------------


def test_storage_weights_by_hand():
    counts = torch.tensor([5.0, 0.0, 3.0, 3.0, 1.0, 0.0])
    assert torch.allclose(storage_weights(counts, "frequency", 4),
                          torch.tensor([5, 0, 3, 3, 1, 0], dtype=torch.float64) / 12)
    assert storage_weights(counts, "seen", 4).tolist() == [1, 0, 1, 1, 1, 0]
    # k = ceil(0.5 * 4) = 2: the most frequent token, then the lower id of the tied pair.
    assert storage_weights(counts, "top_k", 4, capacity=0.5).tolist() == [1, 0, 1, 0, 0, 0]
    # A budget larger than the seen set never stores an unseen token.
    assert storage_weights(counts, "top_k", 4, capacity=2.0).tolist() == [1, 0, 1, 1, 1, 0]
    with pytest.raises(ValueError):
        storage_weights(counts, "median", 4)


def test_outer_product_memory_is_the_sum_of_outer_products():
    g = torch.Generator().manual_seed(0)
    E, U = random_embeddings(6, 5, g), random_embeddings(3, 5, g)
    assert torch.allclose(E.norm(dim=1), torch.ones(6))
    f, q = torch.tensor([0, 2, 1, 1, 0, 2]), torch.rand(6, generator=g)
    W = sum(q[x] * torch.outer(U[f[x]], E[x]) for x in range(6))
    assert torch.allclose(outer_product_memory(E, U, f, q).float(), W, atol=1e-6)


def test_model_logits_are_u_W_e_and_only_W_trains():
    task = AssociativeMemoryTask(AssociativeMemoryTaskConfig(n_tokens=20, n_classes=4))
    torch.manual_seed(0)
    model = AssociativeMemory(AssociativeMemoryConfig(dim=8, init_scale=1.0), task.spec)
    x = torch.tensor([[3], [7]])
    expected = torch.stack([model.output_embeddings @ model.W @ model.input_embeddings[i]
                            for i in (3, 7)])
    assert torch.allclose(model(x), expected, atol=1e-6)
    assert [name for name, _ in model.named_parameters()] == ["W"]
    assert torch.equal(AssociativeMemory(AssociativeMemoryConfig(dim=8), task.spec).W,
                       torch.zeros(8, 8))


# -- recall callback, hand-checked ---------------------------------------------------------------


def tiny_memory(stored):
    """10 tokens with orthonormal embeddings and 3 classes; W stores exactly `stored`."""
    n, targets = 10, torch.tensor([1, 2, 1, 2, 1, 2, 1, 2, 1, 2])  # never class 0 = argmax of 0
    p = zipf_probabilities(n, 1.0)
    spec = TaskSpec(input_shape=(1,), n_outputs=3, loss="cross_entropy", n_tokens=n)
    model = AssociativeMemory(AssociativeMemoryConfig(dim=n), spec)
    model.input_embeddings.copy_(torch.eye(n))
    model.output_embeddings.copy_(torch.eye(3, n))
    q = torch.zeros(n)
    q[stored] = 1.0
    with torch.no_grad():
        model.W.copy_(outer_product_memory(model.input_embeddings, model.output_embeddings,
                                           targets, q).float())
    population = (torch.arange(n).unsqueeze(1), targets, p)
    return model, targets, p, population


def test_recall_buckets_and_population_error_by_hand():
    model, targets, p, population = tiny_memory([0, 1, 2, 5])
    counts = torch.tensor([9.0, 4, 0, 2, 0, 0, 1, 0, 0, 0])  # seen: 0, 1, 3, 6
    tokens = population[0]
    datamodule = Batches(tokens, targets, population=lambda: population, counts=lambda: counts)
    callback = MemoryRecall(every=1, n_buckets=2, estimators=["seen", "top_k", "frequency"],
                            capacity=0.2)
    # Step 0 of a real one-step fit of a copy: the row measures the memory as stored.
    module = DynamicsModule(copy.deepcopy(model), "cross_entropy", OptimConfig(), log_every=1)
    metrics = fit_with([callback], module, datamodule).rows[0]
    assert rank_buckets(10, 2) == [(1, 2), (3, 10)]
    assert metrics["memory/recall_1-2"] == 1.0
    assert metrics["memory/recall_3-10"] == pytest.approx(2 / 8)  # tokens 2 and 5 of 2..9
    wrong = [3, 4, 6, 7, 8, 9]
    assert metrics["memory/population_error"] == pytest.approx(float(p[wrong].sum()))
    # Orthonormal embeddings: a stored token is always recalled, an unstored one never is.
    unseen = [2, 4, 5, 7, 8, 9]
    assert metrics["memory/population_error_seen"] == pytest.approx(float(p[unseen].sum()))
    assert metrics["memory/population_error_top_k"] == pytest.approx(float(p[2:].sum()))  # k = 2
    assert metrics["memory/population_error_frequency"] == metrics["memory/population_error_seen"]


def test_rank_buckets_cover_every_rank_once():
    for n, k in ((8192, 6), (10, 3), (5, 8)):
        buckets = rank_buckets(n, k)
        assert buckets[0][0] == 1 and buckets[-1][1] == n
        assert all(b[0] == a[1] + 1 and b[1] >= b[0] for a, b in zip(buckets, buckets[1:]))


def test_memory_predictions_match_the_model():
    model, _, _, _ = tiny_memory([0, 3])
    x = torch.arange(10).unsqueeze(1)
    preds = memory_predictions(model.W.detach(), model.input_embeddings, model.output_embeddings,
                               chunk=3)
    assert torch.equal(preds, model(x).argmax(1))


# -- power-law fits and theory -------------------------------------------------------------------


def test_fit_recovers_a_planted_exponent_inside_its_interval():
    rng = np.random.default_rng(0)
    x = 2.0 ** np.arange(4, 12)
    covered = 0
    for _trial in range(20):
        y = 3.0 * x ** -0.7 * np.exp(rng.normal(0, 0.1, len(x)))
        fit = fit_power_law(x, y)
        assert abs(fit.exponent - 0.7) < 0.1 and fit.ci_low < fit.exponent < fit.ci_high
        covered += fit.covers(0.7)
    assert covered >= 17  # a 95% interval misses about 1 time in 20
    exact = fit_power_law(x, 2 * x ** -1.0)
    assert exact.exponent == pytest.approx(1.0) and exact.prefactor == pytest.approx(2.0)
    with pytest.raises(ValueError):
        fit_power_law([1, 2], [1, 0.5])


def test_a_power_law_is_only_called_one_when_the_points_support_it():
    x = 2.0 ** np.arange(5, 11)  # six sizes
    assert fit_power_law(x, 3 * x ** -0.7).outcome == "detected"
    exponential = fit_power_law(x, np.exp(-x / 256))  # a line through it has a CI, but it curves
    assert exponential.outcome == "not_detected" and "exponential" in exponential.reason
    bending = fit_power_law(x, x ** -1.0 + 0.01)  # a power law that meets a floor
    assert bending.outcome == "not_detected" and "curve" in bending.reason
    four = fit_power_law(x[:4], 3 * x[:4] ** -0.7)
    assert four.outcome == "undetermined" and "4 sizes" in four.reason
    assert four.exponent == pytest.approx(0.7)  # the exponent is still reported


def test_theory_exponents():
    assert theory_exponent("top_k", "d", 2.0) == 1.0
    assert theory_exponent("frequency", "d", 2.0) == 0.25
    assert theory_exponent("seen", "T", 2.0) == theory_exponent("top_k", "T", 2.0) == 0.5
    assert theory_exponent("trained", "d", 2.0) is None
    assert theory_exponent("seen", "d", 2.0) is None


def test_sweep_fit_uses_the_right_slices_and_windows():
    # The worse bottleneck wins: d^-1 (memory) or 10 T^-1/2 (data); 2% multiplicative noise.
    # Columns as the run table names them (verdict fields).
    rng = np.random.default_rng(1)
    rows = [{AXES["d"]: d, AXES["T"]: T,
             error_column("top_k"): max(d ** -1.0, 10 * T ** -0.5) * rng.lognormal(0, 0.02)}
            for d in (32, 64, 128, 256, 512) for T in (256, 1024, 4096, 16384, 65536, 2 ** 40)]
    fits = scaling_fits(pd.DataFrame(rows), alpha=2.0, fit_T=(256, 65536)).set_index("axis")
    assert fits.loc["d", "exponent"] == pytest.approx(1.0, abs=0.03) and fits.loc["d", "n"] == 5
    assert fits.loc["d", "fixed"] == f"T={2 ** 40:g}"
    assert fits.loc["T", "exponent"] == pytest.approx(0.5, abs=0.03) and fits.loc["T", "n"] == 5
    for axis in ("d", "T"):
        row = fits.loc[axis]
        assert row["covered"] == (row["ci_low"] <= row["theory"] <= row["ci_high"])


# -- scaling_law verdict and the run path ---------------------------------------------------------


def test_scaling_law_verdict_both_outcomes():
    experiment = {"task": {"name": "associative_memory", "n_samples": 4096, "alpha": 2.0,
                           "n_classes": 10}, "model": {"name": "associative_memory", "dim": 32}}
    frame = pd.DataFrame({"step": [0, 100], "memory/population_error": [0.9, 0.05],
                          "memory/population_error_top_k": [0.03, 0.03]})
    verdict = detect("scaling_law", frame, experiment)
    assert verdict.detected and verdict.error_trained == 0.05 and verdict.error_top_k == 0.03
    assert verdict.error_seen is None and (verdict.d, verdict.T) == (32, 4096)
    assert verdict.summary.startswith("d=32, T=4 096: population error 0.05 (trained)")
    stuck = frame.assign(**{"memory/population_error": [0.9, 0.95]})
    assert detect("scaling_law", stuck, experiment).outcome == "not_detected"  # chance is 0.9
    missing = detect("scaling_law", frame[["step"]], experiment)
    assert missing.outcome == "undetermined"
    assert missing.reason == "memory/population_error not logged"
    unknown = detect("scaling_law", frame, {"task": {"name": "associative_memory"}})
    assert unknown.outcome == "undetermined" and "chance level unknown" in unknown.reason


def test_tiny_run_through_the_runner(tmp_path):
    raw = {
        "name": "memory_test",
        "task": {"name": "associative_memory", "n_tokens": 256, "n_classes": 8,
                 "n_samples": 512},
        "model": {"name": "associative_memory", "dim": 16},
        "optim": {"name": "adam", "lr": 0.1},
        "trainer": {"max_steps": 40, "batch_size": 128, "log_every": 10, "eval_every": 40,
                    "device": "cpu"},
        "measure": {"memory_recall": {"every": 20, "estimators": ["top_k", "seen"],
                                      "draws": 2}},
        "phenomenon": {"name": "scaling_law"},
        "logging": {"wandb": False},
    }
    config = build_config(raw)
    run = RunDir.create(tmp_path / "run", config.to_dict(), seed=0)
    result = execute(run, echo=lambda *a: None)
    assert result.status == "completed", result.error
    v = result.verdict
    assert v["detected"] and v["error_trained"] < 0.5 and 0 < v["error_top_k"] < 1
    assert v["error_frequency"] is None and (v["d"], v["T"]) == (16, 512)
