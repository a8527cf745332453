"""Edge of stability: the detector on synthetic tables, the regression task, a tiny real run."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from dynamics_lab.cli import app
from dynamics_lab.config import load_experiment
from dynamics_lab.phenomena import detect
from dynamics_lab.report import write_report
from dynamics_lab.sweep import expand, prepare_sweep, single
from dynamics_lab.tasks.regression import TeacherRegression, TeacherRegressionConfig, chebyshev
from dynamics_lab.tracking.metrics import read_metrics
from dynamics_lab.tracking.rundir import RunDir
from dynamics_lab.train.runner import execute

GD = {"optim": {"name": "gd", "lr": 0.1}}  # 2/eta = 20


def table(after, reach_at=700, threshold=20.0, start=2.5, steps=3000, every=25, log=True):
    """Sharpness rising linearly from `start` to `threshold` at `reach_at`, then `after(ratio
    index)` x threshold; a batch loss every step that rises on every 4th step."""
    sharp_steps = np.arange(0, steps + 1, every)
    rising = sharp_steps <= reach_at
    values = np.where(rising, start + (threshold - start) * sharp_steps / reach_at, 0.0)
    later = np.flatnonzero(~rising)
    values[later] = threshold * np.array([after(i) for i in range(len(later))])
    frame = pd.DataFrame({"step": np.arange(steps + 1)})
    frame["train/batch_loss"] = np.exp(-frame["step"] / 500) * np.where(frame["step"] % 4, 1, 1.5)
    sharp = pd.DataFrame({"step": sharp_steps, "hessian/lambda_max": values})
    if log:
        sharp["hessian/threshold"] = threshold
    return frame.merge(sharp, on="step", how="left")


def test_detected_when_sharpness_hovers_at_two_over_eta():
    v = detect("edge_of_stability", table(lambda i: 1 + 0.05 * np.sin(i)), GD)
    # 0.95 x 20 is first reached at step 675 (2.5 + 17.5 * 675 / 700 = 19.4).
    assert v.detected and v.threshold == 20.0 and v.crossing_step == 675
    # The band is judged on the first half of the 93 later samples.
    assert v.fraction_within == 1.0 and v.n_later_samples == 93 and v.n_window_samples == 47
    assert v.start_ratio == pytest.approx(2.5 / 20) and v.loss_change < 1
    assert v.loss_rise_fraction == pytest.approx(750 / 3000)
    assert v.summary == ("sharpness reached 2/eta=20 at step 675 and stayed within 10% for "
                         "100% of the 47 samples after the crossing, oscillating at the edge; "
                         "loss rose on 25% of steps")
    assert v.picture == "oscillating at the edge" and v.n_before_crossing == 27


def sampled(every: int, reach_at: float, hover, loss_rises: bool = True, steps: int = 3000):
    """Sharpness every `every` steps (ramp from 0.125x to 2/eta=20 by `reach_at`, then
    hover(i) x 2/eta), the batch loss every step (falling; non-monotone when loss_rises)."""
    t = np.arange(0, steps + 1, every)
    ratio = np.where(t < reach_at, 0.125 + 0.875 * t / reach_at, [hover(i) for i in range(len(t))])
    s = np.arange(steps + 1)
    loss = np.exp(-s / 1000) * (1 + (0.05 * (s % 4 == 0) if loss_rises else 0))
    sharp = pd.DataFrame({"step": t, "hessian/lambda_max": 20 * ratio,
                          "hessian/threshold": 20.0})
    return pd.concat([sharp, pd.DataFrame({"step": s, "train/batch_loss": loss})],
                     ignore_index=True).sort_values("step", kind="stable", ignore_index=True)


def test_sharpening_drawn_from_a_few_samples_is_undetermined():
    # The same curve sampled every 150 steps: 4 samples before the crossing at step 600.
    v = detect("edge_of_stability", sampled(150, 500, lambda i: 1 + 0.05 * np.sin(i)), GD)
    assert v.outcome == "undetermined" and v.n_before_crossing == 4
    assert "need 10 before the crossing" in v.reason
    dense = detect("edge_of_stability", sampled(10, 500, lambda i: 1 + 0.05 * np.sin(i)), GD)
    assert dense.detected and dense.n_before_crossing >= 40


def test_too_few_samples_never_hide_a_negative_verdict():
    # Sparse samples, but the sharpness overshoots to 1.5x and stays: not detected regardless.
    v = detect("edge_of_stability", sampled(150, 500, lambda i: 1.5), GD)
    assert v.outcome == "not_detected"


def test_settled_just_below_the_edge_is_named():
    # Sharpness settles at 0.96x with a monotone loss (the other fixed point of the
    # second-order model): within the band, so detected, and named for what it is.
    v = detect("edge_of_stability", sampled(10, 500, lambda i: 0.96, loss_rises=False), GD)
    assert v.detected and v.picture == "settled just below the edge"
    assert v.above_fraction == 0 and v.rises_after == 0
    assert "settled just below the edge" in v.summary


def test_a_jump_to_the_edge_within_a_few_steps_is_a_catapult():
    # Densely sampled (every step), yet the threshold is reached by step 15: no sharpening.
    v = detect("edge_of_stability", sampled(1, 16, lambda i: 1 + 0.05 * np.sin(i / 20)), GD)
    assert v.outcome == "not_detected" and v.picture == "catapult"
    assert "catapult" in v.summary


def test_uncertified_sharpness_samples_are_dropped():
    # An eigensolver that did not certify a sample: that sample is not evidence either way.
    frame = sampled(10, 500, lambda i: 1 + 0.05 * np.sin(i))
    sharp = frame["hessian/lambda_max"].notna()
    frame["hessian/certified"] = np.where(sharp, 1.0, np.nan)
    rows = frame.index[sharp & (frame["step"] > 1000)]
    frame.loc[rows[:5], "hessian/lambda_max"] = 1e6  # wild values the solver flagged
    frame.loc[rows[:5], "hessian/certified"] = 0.0
    v = detect("edge_of_stability", frame, GD)
    assert v.detected and v.n_uncertified == 5 and v.max_sharpness_ratio < 1.1


def test_not_detected_when_sharpness_overshoots_and_stays_far():
    v = detect("edge_of_stability", table(lambda i: 1.5 + 0.2 * np.sin(i)), GD)
    assert not v.detected and v.crossing_step == 675 and v.fraction_within < 0.5
    assert v.max_sharpness_ratio == pytest.approx(1.7, abs=0.01)
    assert "but stayed within 10% for" in v.summary


def test_never_reaching_the_threshold():
    frame = table(lambda i: 1.0)
    frame["hessian/lambda_max"] *= 0.8
    v = detect("edge_of_stability", frame, GD)
    assert not v.detected and v.crossing_step is None and v.fraction_within is None
    assert v.outcome == "not_detected"  # levelled off: not still rising
    assert v.summary.startswith("sharpness never reached 2/eta=20: peaked at 0.80x of it")


def test_reached_too_late_to_tell():
    config = {**GD, "phenomenon": {"name": "edge_of_stability", "min_later_samples": 10}}
    v = detect("edge_of_stability", table(lambda i: 1.0, reach_at=3000), config)
    assert v.outcome == "undetermined" and v.crossing_step == 2850 and v.n_later_samples == 6
    assert "too late to tell: 6 later samples over 150 steps (need 10" in v.summary


def test_no_hessian_column_and_threshold_from_config():
    frame = table(lambda i: 1.0)
    v = detect("edge_of_stability", frame.drop(columns=["hessian/lambda_max"]), GD)
    assert v.outcome == "undetermined"
    assert v.reason == "hessian/precond_lambda_max or hessian/lambda_max not logged"
    unlogged = table(lambda i: 1.0, log=False)
    assert detect("edge_of_stability", unlogged, GD).threshold == pytest.approx(20.0)
    momentum = {"optim": {"name": "sgd", "lr": 0.1, "momentum": 0.5}}  # (2 + 1) / 0.1 = 30
    assert detect("edge_of_stability", unlogged, momentum).threshold == pytest.approx(30.0)
    assert "no stability threshold" in detect("edge_of_stability", unlogged, {}).summary
    assert detect("edge_of_stability", unlogged, {}).outcome == "undetermined"


def test_adam_uses_the_preconditioned_sharpness():
    adam = {"optim": {"name": "adam", "lr": 0.01, "betas": [0.9, 0.999]}}  # 38 / 0.01 = 3800
    frame = table(lambda i: 1.0, threshold=3800.0, log=False)
    assert "not logged" in detect("edge_of_stability", frame, adam).summary
    frame = frame.rename(columns={"hessian/lambda_max": "hessian/precond_lambda_max"})
    v = detect("edge_of_stability", frame, adam)
    assert v.detected and v.threshold == pytest.approx(3800.0)
    assert v.sharpness_metric == "hessian/precond_lambda_max"


def test_thresholds_come_from_the_phenomenon_section():
    config = {**GD, "phenomenon": {"name": "edge_of_stability", "band": 0.01}}
    assert not detect("edge_of_stability", table(lambda i: 1 + 0.05 * np.sin(i)), config).detected


def test_task_is_deterministic_in_its_seed():
    def build(**kw):
        return TeacherRegression(TeacherRegressionConfig(dim=7, n_train=50, n_val=10, **kw)).build()

    a, b, c = build(seed=3), build(seed=3), build(seed=4)
    for split in ("train", "val"):
        assert all(torch.equal(s, t) for s, t in zip(a[split], b[split]))
    assert not torch.equal(a["train"][1], c["train"][1])
    x, y = build(teacher="chebyshev", n_outputs=3)["train"]
    assert x.dtype == y.dtype == torch.float32 and y.shape == (50, 3)
    assert torch.allclose(y.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std(0), torch.ones(3), atol=1e-5)
    t = torch.linspace(-2, 2, 9, dtype=torch.float64)
    assert torch.allclose(chebyshev(t, 3), 4 * t**3 - 3 * t)
    assert torch.allclose(chebyshev(t, 0), torch.ones_like(t))


TINY = ["trainer.max_steps=30", "measure.hessian.every=10", "measure.hessian.log_spaced=false",
        "measure.hessian.also_every=null",
        "trainer.eval_every=10",
        "task.n_train=64", "task.n_val=16", "model.width=16"]


def test_cli_run_writes_hessian_columns_and_a_verdict(runs_root):
    args = [arg for override in TINY for arg in ("--set", override)]
    result = CliRunner().invoke(app, ["run", "edge_of_stability", *args])
    assert result.exit_code == 0, result.output
    run_dir = next(runs_root.glob("edge_of_stability/*/seed=0"))
    metrics = read_metrics(run_dir)
    sharp = metrics[["step", "hessian/lambda_max"]].dropna()
    assert list(sharp["step"]) == [0, 10, 20, 30]
    assert (metrics["hessian/threshold"].dropna() == 2 / 0.1).all()
    assert metrics["train/batch_loss"].notna().sum() == 30  # log_every 1
    verdict = json.loads((run_dir / "verdict.json").read_text())
    assert verdict["phenomenon"] == "edge_of_stability" and verdict["threshold"] == 20.0


def test_report_draws_sharpness_against_two_over_eta(tmp_path):
    grid = "sweep.grid.optim.lr=[0.1, 0.3]"
    config = load_experiment("edge_of_stability", "quick", [*TINY, grid, "sweep.seeds=[0]"])
    sweep_dir = tmp_path / "runs" / "edge_of_stability" / "sweep"
    for run_dir in prepare_sweep(config, expand(config), sweep_dir):
        assert execute(RunDir(run_dir), echo=lambda m: None).status == "completed"
    printed = []
    written = write_report(tmp_path / "runs", tmp_path / "results", echo=printed.append)
    assert [p.name for p in written] == ["summary.csv", "cells.csv", "sharpness.png"]
    cells = pd.read_csv(written[1])
    assert list(cells["optim.lr"]) == [0.1, 0.3] and set(cells["runs"]) == {1}
    assert "lr=0.1: " in printed[0] and "seeds detected" in printed[0]
    summary = pd.read_csv(written[0])
    assert sorted(summary["threshold"]) == pytest.approx([2 / 0.3, 2 / 0.1])


HELD_OUT = load_experiment("edge_of_stability", "held_out").sweep.seeds


@pytest.mark.slow
@pytest.mark.parametrize("lr", [0.1, 0.3])
@pytest.mark.parametrize("seed", [0, *HELD_OUT])
def test_quick_profile_reaches_the_edge_of_stability(tmp_path, lr, seed):
    # Both ends of the swept eta, a shipped seed and the held-out ones: sharpening drawn from
    # >= 20 samples before the crossing, then the edge.
    config = load_experiment("edge_of_stability", "quick", [f"optim.lr={lr}", f"seed={seed}"])
    [run_dir] = prepare_sweep(config, [single(config)], tmp_path / "sweep")
    result = execute(RunDir(run_dir), echo=lambda m: None)
    assert result.status == "completed"
    assert result.verdict["detected"], result.verdict["summary"]
    assert result.verdict["n_before_crossing"] >= 20
    assert result.verdict["picture"] == "oscillating at the edge"


def curve(ratio, every: int = 10, loss_rise_every: int = 4, steps: int = 3000, **flags):
    """A table from sharpness ratios (x 2/eta=20) sampled every `every` steps; the batch loss
    falls, rising every `loss_rise_every` steps (0: monotone); `flags` add columns per sample."""
    t = np.arange(len(ratio)) * every
    s = np.arange(steps + 1)
    bump = 0.05 * (s % loss_rise_every == 0) if loss_rise_every else 0
    sharp = pd.DataFrame({"step": t, "hessian/lambda_max": 20 * np.asarray(ratio),
                          "hessian/threshold": 20.0, **flags})
    loss = pd.DataFrame({"step": s, "train/batch_loss": np.exp(-s / 1000) * (1 + bump)})
    return pd.concat([sharp, loss], ignore_index=True).sort_values("step", kind="stable",
                                                                   ignore_index=True)


def hover(n):
    return 1 + 0.05 * np.sin(np.arange(n))


def test_a_jump_after_a_flat_stretch_is_no_sharpening():
    # Flat at 0.5x for 30 samples, then one step to 1.8x, relaxing onto the edge: counted
    # samples before the crossing are not a sharpening curve.
    ratio = np.concatenate([np.full(30, 0.5), [1.8, 1.5, 1.2], hover(270)])
    v = detect("edge_of_stability", curve(ratio), GD)
    assert v.outcome == "not_detected" and v.picture == "catapult"
    assert "last sampling interval" in v.reason


def test_a_falling_sharpness_before_the_crossing_is_no_sharpening():
    # 0.79x falling to 0.59x over 100 samples, then up to the edge over 10 samples (no jump).
    ratio = np.concatenate([np.linspace(0.79, 0.59, 100), np.linspace(0.63, 0.99, 10),
                            hover(200)])
    v = detect("edge_of_stability", curve(ratio), GD)
    assert v.outcome == "not_detected" and "did not rise" in v.reason


def test_settled_below_with_a_slightly_noisy_loss_is_still_settled():
    # Never above the threshold; the loss ticks up on ~3% of steps.
    ratio = np.concatenate([np.linspace(0.15, 0.96, 60), np.full(240, 0.96)])
    v = detect("edge_of_stability", curve(ratio, loss_rise_every=33), GD)
    assert v.detected and v.picture == "settled just below the edge"


def test_a_missing_certified_flag_where_the_run_logs_one_is_not_evidence():
    # 40 wild samples whose flag is missing (NaN) in a run that logs the flag.
    ratio = np.concatenate([np.linspace(0.15, 1.0, 60), hover(240)])
    flags = np.ones(len(ratio))
    wild = np.arange(100, 140)
    ratio[wild], flags[wild] = 5e4, np.nan
    v = detect("edge_of_stability", curve(ratio, **{"hessian/certified": flags}), GD)
    assert v.detected and v.n_uncertified == 40 and v.max_sharpness_ratio < 1.1


def test_the_preconditioned_sharpness_is_filtered_by_its_own_flag():
    # Adam: the plain Hessian's solve failed on 20 samples (irrelevant to the preconditioned
    # sharpness); the preconditioned solve failed on 5 others, which are dropped.
    ratio = np.concatenate([np.linspace(0.15, 1.0, 60), hover(240)])
    frame = curve(ratio)
    sharp = frame["hessian/lambda_max"].notna()
    frame["hessian/precond_lambda_max"] = frame["hessian/lambda_max"]
    plain, precond = np.ones(sharp.sum()), np.ones(sharp.sum())
    plain[100:120], precond[150:155] = 0.0, 0.0
    frame.loc[sharp, "hessian/certified"] = plain
    frame.loc[sharp, "hessian/precond_certified"] = precond
    adam = {"optim": {"name": "adam", "lr": 0.001}}
    frame["hessian/threshold"] = frame["hessian/threshold"]
    v = detect("edge_of_stability", frame, adam)
    assert v.sharpness_metric == "hessian/precond_lambda_max" and v.n_uncertified == 5
