"""The parity sweep's learning-time fit against n, per k (phenomena/hidden_progress/scaling.py)."""

import numpy as np
import pandas as pd
import pytest

from dynamics_lab.phenomena.hidden_progress.cases import table as hidden_progress
from dynamics_lab.phenomena.hidden_progress.figures import write_figures
from dynamics_lab.phenomena.hidden_progress.scaling import (
    learning_step,
    learning_table,
    scaling_table,
)
from dynamics_lab.phenomena.sweep_view import SweepView


def test_learning_step_interpolates_the_halving_of_the_loss():
    steps = np.arange(0, 1001, 100.0)
    loss = np.where(steps < 500, 1.0, 0.0)
    loss[5] = 0.25
    frame = pd.DataFrame({"step": steps, "val/loss": loss})
    # Median of three: 1.0 at step 400, 0.25 at 500; the half is two thirds of the way.
    assert learning_step(frame) == pytest.approx(400 + 100 * (1 - 0.5) / (1 - 0.25))
    assert learning_step(frame.assign(**{"val/loss": 1.0})) is None


def test_exponents_per_k_recover_the_growth_of_the_learning_step(tmp_path):
    rows, frames = [], {}
    for k in (2, 3):
        for n in (20, 30, 50, 70):
            drop = 2.0 * n ** (k - 1) * (1.03 if n == 30 else 0.98)
            run_id = f"k={k},n={n},seed=0"
            frames[run_id] = hidden_progress(every=10, steps=int(4 * drop) + 200,
                                             drop_at=drop)
            rows.append({"run_id": run_id, "task.k": k, "task.n": n, "seed": 0,
                         "verdict/outcome": "detected", "verdict/plateau_length": drop})
    view = SweepView(pd.DataFrame(rows), ["task.k", "task.n"], tmp_path, frames.get,
                     lambda run_id: {})
    fits = scaling_table(learning_table(view)).set_index(["k", "quantity"])
    for k in (2, 3):
        fit = fits.loc[(k, "learning_step")]
        assert fit["exponent"] == pytest.approx(k - 1, abs=0.1)
        assert fit["ci_low"] < k - 1 < fit["ci_high"] and fit["n"] == 4
        assert fits.loc[(k, "plateau_length"), "exponent"] == pytest.approx(k - 1, abs=0.05)
    written = write_figures(view)
    assert [p.name for p in written] == ["concentration_vs_loss.png", "learning_scaling.csv",
                                         "learning_steps.csv", "learning_scaling.png"]
