"""The grokking verdict on hand-made metric tables: the three outcomes and the edge cases (the
look-alikes are in the shared battery, tests/test_detectors.py)."""

import numpy as np
import pandas as pd

from dynamics_lab.phenomena import detect


def table(fit_at, gen_at, steps=range(0, 5001, 20)):
    steps = np.array(list(steps))
    train = np.where(steps >= fit_at, 1.0, 0.5) if fit_at is not None else np.full(len(steps), 0.5)
    val = np.where(steps >= gen_at, 0.97, 0.05) if gen_at is not None else np.full(len(steps), 0.05)
    return pd.DataFrame({"step": steps, "train/acc": train, "val/acc": val})


def test_grokking_detected_with_delay():
    v = detect("grokking", table(140, 1620))
    assert v.detected and v.outcome == "detected" and v.val_acc_at_fit == 0.05
    assert v.delay_evals == (1620 - 140) // 20 and v.held_fraction == 1.0
    assert (v.fit_step, v.generalization_step) == (140, 1620)
    assert abs(v.delay_ratio - 1620 / 140) < 1e-9
    assert v.summary.startswith("grokked at step 1 620, 11.6x after fitting")


def test_no_generalization_is_not_grokking():
    v = detect("grokking", table(140, None))
    assert not v.detected and v.generalization_step is None
    assert "val acc peaked at 0.050" in v.summary


def test_generalizing_with_fitting_is_not_grokking():
    v = detect("grokking", table(200, 300))
    assert not v.detected and v.delay_ratio == 1.5
    assert "only 1.5x" in v.summary


def test_never_fitting_is_not_grokking():
    assert not detect("grokking", table(None, None)).detected


def test_thresholds_come_from_the_config():
    config = {"phenomenon": {"name": "grokking", "min_delay_ratio": 20.0}}
    assert not detect("grokking", table(140, 1620), config).detected


def test_missing_rows_and_columns_are_handled():
    frame = table(140, 1620)
    frame.loc[frame.index % 2 == 0, "val/acc"] = np.nan  # metrics logged at different steps
    assert detect("grokking", frame).detected
    missing = detect("grokking", frame.drop(columns=["val/acc"]))
    assert missing.outcome == "undetermined" and not missing.detected
    assert missing.reason == "val/acc not logged"


def test_verdict_is_json_ready():
    d = detect("grokking", table(140, 1620)).to_dict()
    assert d["phenomenon"] == "grokking" and d["detected"] is True and d["outcome"] == "detected"
    assert list(d)[:3] == ["phenomenon", "outcome", "detected"] and d["reason"]
    assert isinstance(d["fit_step"], int)


def test_a_run_that_stops_soon_after_the_fit_is_undetermined():
    short = table(140, None, steps=range(0, 261, 20))  # ends before 2 x the fit step
    v = detect("grokking", short)
    assert v.outcome == "undetermined" and "too soon after the fit" in v.reason
    long_enough = table(140, None)  # 4 000 steps
    assert detect("grokking", long_enough).outcome == "not_detected"
