"""Large-step sparsity: the step-size schedule (against a hand-written SGD loop), the ReLU-teacher
task, the activation-sparsity measurement (against brute force and the paper's own de-duplication
loop), the per-run detector, the sweep's comparison of step sizes, and the shipped sweep (slow)."""

import copy
import json

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import Batches, ListLogger, fit_with
from torch import nn
from typer.testing import CliRunner

from dynamics_lab.measure.activation_sparsity import ActivationSparsity, distinct_units
from dynamics_lab.phenomena import detect
from dynamics_lab.phenomena.large_step_sgd import compare_learning_rates
from dynamics_lab.schema import OptimConfig
from dynamics_lab.tasks.base import ResidentBatches
from dynamics_lab.tasks.relu_teacher import ReluTeacher, ReluTeacherConfig
from dynamics_lab.train.module import DynamicsModule

# -- schedule ---------------------------------------------------------------------------------


def test_lr_schedule_warms_up_then_decays():
    config = OptimConfig(name="sgd", lr=0.4, warmup_steps=4, decay_steps=[10, 20],
                         decay_factor=0.5)
    lrs = [config.lr_at(t) for t in (0, 1, 3, 9, 10, 19, 20, 100)]
    assert lrs == pytest.approx([0.1, 0.2, 0.4, 0.4, 0.2, 0.2, 0.1, 0.1])
    assert not OptimConfig(name="sgd", lr=0.4).scheduled


def test_module_trains_with_the_scheduled_step_sizes():
    torch.manual_seed(0)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    net = nn.Linear(3, 1)
    reference = [p.detach().clone() for p in net.parameters()]
    config = OptimConfig(name="sgd", lr=0.3, warmup_steps=3, decay_steps=[5], decay_factor=0.1)
    module = DynamicsModule(net, "squared", config, log_every=1)
    logger = ListLogger()
    loader = ResidentBatches(x, y, batch_size=None, seed=0)  # the full batch, every step
    trainer = L.Trainer(max_steps=8, logger=logger, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(module, train_dataloaders=loader)
    w = [p.clone().requires_grad_() for p in reference]  # plain SGD by hand
    for step in range(8):
        loss = 0.5 * ((x @ w[0].T + w[1] - y) ** 2).sum(1).mean()
        grads = torch.autograd.grad(loss, w)
        with torch.no_grad():
            w = [(p - config.lr_at(step) * g).requires_grad_() for p, g in zip(w, grads)]
    for mine, theirs in zip(net.parameters(), w):
        assert torch.allclose(mine, theirs, atol=1e-6)
    logged = {step: row["train/lr"] for step, row in logger.rows.items() if "train/lr" in row}
    assert logged[0] == pytest.approx(0.1) and logged[5] == pytest.approx(0.03)


# -- task -------------------------------------------------------------------------------------


def test_relu_teacher_task_is_deterministic_on_the_sphere():
    config = ReluTeacherConfig(dim=4, teacher_widths=[3, 2], n_train=20, n_val=10)
    a, b = ReluTeacher(config).build(), ReluTeacher(config).build()
    assert all(torch.equal(a[s][i], b[s][i]) for s in ("train", "val") for i in (0, 1))
    x, y = a["train"]
    assert x.shape == (20, 4) and y.shape == (20, 1)
    assert torch.allclose(x.norm(dim=1), torch.ones(20), atol=1e-6)
    assert y.std() > 0.01
    other = ReluTeacher(config.model_copy(update={"seed": 1})).build()
    assert not torch.equal(a["train"][1], other["train"][1])


# -- measurement ------------------------------------------------------------------------------


def paper_distinct(acts: np.ndarray, threshold: float) -> np.ndarray:
    """The paper's loop (deep_nets/utils_eval.py): drop, row by row, a unit correlated above the
    threshold with any unit still present; the kept indices."""
    keep = np.where((acts > 0).sum(0) > 0)[0]
    corr = np.corrcoef(acts[:, keep].T) - np.eye(len(keep))
    drop, i, j = [], 0, 0
    while i != corr.shape[0]:
        if (np.abs(corr[i]) > threshold).sum() > 0:
            corr = np.delete(np.delete(corr, i, axis=0), i, axis=1)
            drop.append(j)
        else:
            i += 1
        j += 1
    return np.delete(keep, drop)


def test_distinct_units_match_the_papers_deduplication():
    rng = np.random.default_rng(0)
    base = np.maximum(rng.normal(size=(40, 6)), 0)
    acts = np.concatenate([base, 2 * base[:, :2] + 1e-3 * rng.random((40, 2)),
                           np.zeros((40, 2))], axis=1)  # units 6, 7 copy 0, 1; 8, 9 dead
    kept = distinct_units(torch.tensor(acts), 0.95).nonzero().flatten().tolist()
    assert kept == paper_distinct(acts, 0.95).tolist() == [2, 3, 4, 5, 6, 7]


def test_activation_sparsity_matches_brute_force():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 4), nn.ReLU(),
                          nn.Linear(4, 1))
    with torch.no_grad():
        model[0].bias[:2] = -100.0  # two units of the first layer never fire
    x = torch.randn(30, 3)
    # Step 0 of a real one-step fit of a copy: the row measures `model`, left as it is.
    probe = (x, torch.zeros(30, 1))
    module = DynamicsModule(copy.deepcopy(model), "squared", OptimConfig(), log_every=1)
    metrics = fit_with([ActivationSparsity(every=1, probe=probe)], module, Batches(*probe)).rows[0]
    h1 = torch.relu(model[0](x)).detach()
    h2 = torch.relu(model[2](h1)).detach()
    for name, h in (("1", h1), ("3", h2)):
        active = sum(float(h[i, u] > 0) for i in range(30) for u in range(h.shape[1]))
        dead = sum(all(h[i, u] <= 0 for i in range(30)) for u in range(h.shape[1]))
        assert metrics[f"sparsity/active_fraction/{name}"] == pytest.approx(active / h.numel())
        assert metrics[f"sparsity/dead_fraction/{name}"] == pytest.approx(dead / h.shape[1])
        kept = paper_distinct(h.numpy(), 0.95)
        distinct = float((h[:, kept] > 0).sum()) / h.numel()
        assert metrics[f"sparsity/distinct_active_fraction/{name}"] == pytest.approx(distinct)
    assert metrics["sparsity/dead_fraction/1"] == pytest.approx(2 / 6)
    pooled = float((h1 > 0).sum() + (h2 > 0).sum()) / (h1.numel() + h2.numel())
    assert metrics["sparsity/active_fraction"] == pytest.approx(pooled)


# -- detector and comparison ------------------------------------------------------------------

EXPERIMENT = {"optim": {"name": "sgd", "lr": 0.3, "decay_steps": [7000]}}


def run_table(before=1e-3, after=2e-4, active_end=0.3, steps=10000, every=50) -> pd.DataFrame:
    t = np.arange(0, steps + 1, every, dtype=float)
    loss = np.where(t < 7000, before, after) * (1 + 0.2 * np.sin(t / 30))
    active = 0.5 + (active_end - 0.5) * np.clip(t / 4000, 0, 1)
    return pd.DataFrame({"step": t, "train/loss": loss, "val/loss": 5 * loss,
                         "sparsity/active_fraction": active,
                         "sparsity/dead_fraction": 1 - active - 0.3})


def test_detector_needs_a_held_up_loss_and_fewer_active_units():
    v = detect("large_step_sgd", run_table(), EXPERIMENT)
    assert v.detected and v.decay_drop == pytest.approx(5, rel=0.1), v.summary
    assert v.active_init == pytest.approx(0.5) and v.sparsification == pytest.approx(0.4)
    converged = detect("large_step_sgd", run_table(before=2.4e-4), EXPERIMENT)
    assert converged.outcome == "not_detected" and "no loss stabilization" in converged.reason
    dense = detect("large_step_sgd", run_table(active_end=0.48), EXPERIMENT)
    assert dense.outcome == "not_detected" and "active fraction fell only" in dense.reason
    assert detect("large_step_sgd", run_table(), {"optim": {"lr": 0.3}}).outcome == \
        "undetermined"
    assert detect("large_step_sgd", run_table(every=1000), EXPERIMENT).outcome == "undetermined"
    short = detect("large_step_sgd", run_table(steps=6000), EXPERIMENT)
    assert short.outcome == "undetermined" and "after the last step" in short.reason
    missing = detect("large_step_sgd", run_table().drop(columns="sparsity/active_fraction"),
                     EXPERIMENT)
    assert missing.outcome == "undetermined" and "not logged" in missing.reason


def sweep_table(actives, tests, stabilized=(False, True, True)) -> pd.DataFrame:
    rows = [{"optim.lr": lr, "seed": s, "verdict/stabilized": st,
             "verdict/active_before_decay": a + 0.01 * s, "verdict/dead_before_decay": 0.1,
             "verdict/final_val_loss": t}
            for lr, a, t, st in zip((0.02, 0.1, 0.3), actives, tests, stabilized)
            for s in range(3)]
    return pd.DataFrame(rows)


def test_comparison_asks_every_stabilized_large_step_for_sparser_and_better():
    good = compare_learning_rates(sweep_table([0.5, 0.4, 0.3], [2e-2, 1e-2, 4e-3]))
    assert good.outcome == "detected" and "lr 0.3" in good.reason
    assert good.table["active_before_decay"].tolist() == pytest.approx([0.51, 0.41, 0.31])
    denser = compare_learning_rates(sweep_table([0.5, 0.55, 0.3], [2e-2, 1e-2, 4e-3]))
    assert denser.outcome == "not_detected" and "lr 0.1 (not sparser)" in denser.reason
    worse = compare_learning_rates(sweep_table([0.5, 0.4, 0.3], [2e-2, 1e-2, 3e-2]))
    assert worse.outcome == "not_detected" and "test loss not lower" in worse.reason
    ignored = compare_learning_rates(sweep_table([0.5, 0.55, 0.3], [2e-2, 3e-2, 4e-3],
                                                 (False, False, True)))
    assert ignored.detected  # a larger step that never stabilized is not held to the claim
    none = compare_learning_rates(sweep_table([0.5, 0.4, 0.3], [2e-2, 1e-2, 4e-3],
                                              (False, False, False)))
    assert none.outcome == "not_detected" and "no larger step size" in none.reason
    single = compare_learning_rates(sweep_table([0.5, 0.4, 0.3], [2e-2, 1e-2, 4e-3]).iloc[:3])
    assert single.outcome == "undetermined"


@pytest.mark.slow
def test_shipped_sweep_sparsifies_and_generalizes_with_large_steps(tmp_path):
    from dynamics_lab.cli import app
    from dynamics_lab.report import sweep_table as read_sweep
    from dynamics_lab.report.tables import find_sweeps

    result = CliRunner().invoke(app, ["run", "large_step_sgd", "--sweep", "--workers", "1",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    verdicts = {p.parent.name: json.loads(p.read_text()) for p in tmp_path.rglob("verdict.json")}
    small = [v for k, v in verdicts.items() if k.startswith("lr=0.02,")]
    large = [v for k, v in verdicts.items() if k.startswith("lr=0.3,")]
    assert small and all(not v["detected"] for v in small), [v["summary"] for v in small]
    assert sum(v["detected"] for v in large) * 2 > len(large), [v["summary"] for v in large]
    table = read_sweep(find_sweeps(tmp_path)[0])
    comparison = compare_learning_rates(table)
    assert comparison.detected, comparison.reason
