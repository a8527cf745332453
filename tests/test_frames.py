"""Notebook loaders: a sweep on disk as wide and long DataFrames with config and verdict."""

import pandas as pd
import pytest
from typer.testing import CliRunner

import dynamics_lab
from dynamics_lab.cli import app


@pytest.fixture
def sweep_dir(runs_root, tiny_overrides):
    args = ["run", "grokking", "--sweep"]
    for o in [*tiny_overrides, "sweep.grid={optim.weight_decay: [0.0, 1.0]}", "sweep.seeds=[0]"]:
        args += ["--set", o]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (sweep,) = [p.parent for p in runs_root.rglob("sweep.json")]
    return sweep


def test_load_sweep_wide_joins_config_status_verdict_and_metrics(sweep_dir):
    wide = dynamics_lab.load_sweep(sweep_dir, config=True)
    assert sorted(wide["optim.weight_decay"].unique()) == [0.0, 1.0]
    assert set(wide["status"]) == {"completed"}
    assert wide["verdict/phenomenon"].eq("grokking").all()
    assert {"step", "train/acc", "val/acc", "run_id", "task.p", "model.width"} <= set(wide)
    per_run = wide.groupby("run_id")["step"].apply(list)
    assert len(per_run) == 2 and all(steps == [0, 10, 20, 30, 40] for steps in per_run)
    one = wide[wide["run_id"] == per_run.index[0]]
    metrics = pd.read_csv(sweep_dir / per_run.index[0] / "metrics.csv")
    assert one["val/acc"].tolist() == pytest.approx(metrics["val/acc"].tolist())


def test_load_run_long_has_one_row_per_logged_value(sweep_dir):
    run_dir = next(p for p in sweep_dir.iterdir() if p.is_dir())
    long = dynamics_lab.load_run(run_dir, form="long", config=True)
    wide = dynamics_lab.load_run(run_dir)
    metric_columns = [c for c in wide.columns if "/" in c and c in pd.read_csv(
        run_dir / "metrics.csv").columns]
    assert len(long) == int(wide[metric_columns].notna().sum().sum())
    assert set(long["metric"]) == set(metric_columns)
    assert {"run_id", "optim.lr", "status", "step", "metric", "value"} <= set(long)


def test_bad_form_and_empty_dir_are_clear(sweep_dir, tmp_path):
    with pytest.raises(ValueError, match="form must be"):
        dynamics_lab.load_run(next(p for p in sweep_dir.iterdir() if p.is_dir()), form="tall")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no runs"):
        dynamics_lab.load_sweep(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="load_sweeps"):  # a folder of sweeps
        dynamics_lab.load_sweep(tmp_path)
