"""The grokking verdict on synthetic metric tables: both outcomes and the edge cases."""

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
    assert v.detected
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
    assert not detect("grokking", frame.drop(columns=["val/acc"])).detected


def test_verdict_is_json_ready():
    d = detect("grokking", table(140, 1620)).to_dict()
    assert d["phenomenon"] == "grokking" and d["detected"] is True
    assert isinstance(d["fit_step"], int)
