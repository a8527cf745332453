"""Notebook analysis: typed, compact tables read from metrics.parquet, many sweeps in one frame,
two sweeps compared, unreadable runs skipped with a warning, and no torch or Lightning loaded."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import dynamics_lab
from dynamics_lab.frames import SkippedRunWarning
from dynamics_lab.tracking.metrics import write_parquet

CONFIG = {"name": "grokking", "seed": 0, "task": {"name": "modular_arithmetic", "p": 23},
          "model": {"name": "mlp", "width": 32}, "optim": {"lr": 0.001, "weight_decay": 0.0},
          "phenomenon": {"name": "grokking"}}


def fake_sweep(root: Path, sweep_id: str, grid: list[float], seeds=(0, 1),
               delays=None) -> Path:
    """A finished sweep as the runner leaves it: manifest, config, meta, metrics, verdict."""
    sweep = root / "grokking" / sweep_id
    runs = []
    for i, wd in enumerate(grid):
        for seed in seeds:
            run_id = f"weight_decay={wd},seed={seed}"
            run = sweep / run_id
            run.mkdir(parents=True)
            config = {**CONFIG, "seed": seed, "optim": {"lr": 0.001, "weight_decay": wd}}
            (run / "config.yaml").write_text(yaml.safe_dump(config))
            (run / "meta.json").write_text(json.dumps(
                {"status": "completed", "seed": seed, "wall_time_s": 1.5}))
            (run / "metrics.csv").write_text(
                "step,train/acc,val/acc\n0,0.1,0.05\n10,1.0,0.2\n20,1.0,0.99\n")
            write_parquet(run / "metrics.csv", run / "metrics.parquet")
            grokked = delays is not None and delays[i] is not None
            (run / "verdict.json").write_text(json.dumps({
                "phenomenon": "grokking", "outcome": "detected" if grokked else "not_detected",
                "detected": grokked, "summary": "s", "fit_step": 10 if grokked else None,
                "generalization_step": 20 + seed if grokked else None,
                "delay_ratio": delays[i] + seed if grokked else None}))
            runs.append({"run_id": run_id, "overrides": {"optim.weight_decay": wd,
                                                         "seed": seed}})
    (sweep / "sweep.json").write_text(json.dumps(
        {"experiment": "grokking", "sweep_id": sweep_id, "grid": {"optim.weight_decay": grid},
         "seeds": list(seeds), "runs": runs}))
    return sweep


@pytest.fixture
def sweep(tmp_path):
    return fake_sweep(tmp_path, "20260101-000000-aaaa", [0.0, 1.0], delays=[None, 4.0])


def test_importing_and_loading_a_sweep_loads_neither_torch_nor_lightning(sweep):
    code = ("import sys, dynamics_lab as dl\n"
            f"frame = dl.load_sweep({str(sweep)!r}); dl.load_sweeps({str(sweep.parent)!r})\n"
            "dl.compare(frame, frame)\n"
            "heavy = sorted(m for m in ('torch', 'lightning', 'pytorch_lightning', 'wandb')"
            " if m in sys.modules)\n"
            "print(len(frame), heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["12", "[]"], out.stdout + out.stderr


def test_the_loaders_are_listed_for_tab_completion():
    assert {"load_run", "load_sweep", "load_sweeps", "compare"} <= set(dir(dynamics_lab))
    with pytest.raises(AttributeError):
        dynamics_lab.load_everything  # noqa: B018


def test_verdict_fields_come_back_typed(sweep):
    wide = dynamics_lab.load_sweep(sweep)
    for field in ("delay_ratio", "generalization_step", "fit_step"):
        assert pd.api.types.is_float_dtype(wide[f"verdict/{field}"]), field
    assert pd.api.types.is_bool_dtype(wide["verdict/detected"])
    assert pd.api.types.is_integer_dtype(wide["seed"])
    assert wide.groupby("optim.weight_decay")["verdict/delay_ratio"].mean().iloc[1] == 4.5


def test_default_columns_are_swept_keys_seed_status_verdict_and_metrics(sweep):
    wide = dynamics_lab.load_sweep(sweep)
    assert [c for c in wide.columns if not c.startswith("verdict/")] == [
        "run_id", "sweep_id", "optim.weight_decay", "seed", "status", "wall_time_s", "error",
        "step",
        "train/acc", "val/acc"]
    full = dynamics_lab.load_sweep(sweep, config=True)
    assert {"task.p", "model.width", "optim.lr", "phenomenon.name"} <= set(full.columns)


def test_metrics_come_from_the_parquet_the_run_wrote(sweep):
    run = sweep / "weight_decay=0.0,seed=0"
    frame = pd.read_parquet(run / "metrics.parquet")
    frame.loc[2, "val/acc"] = 0.5  # only the parquet says 0.5
    frame.to_parquet(run / "metrics.parquet", index=False)
    one = dynamics_lab.load_run(run)
    assert one["val/acc"].tolist() == [0.05, 0.2, 0.5]
    (run / "metrics.parquet").unlink()
    assert dynamics_lab.load_run(run)["val/acc"].tolist() == [0.05, 0.2, 0.99]


def test_a_corrupt_metrics_file_or_missing_config_skips_the_run_with_one_warning(sweep):
    (sweep / "weight_decay=0.0,seed=0" / "metrics.parquet").unlink()
    (sweep / "weight_decay=0.0,seed=0" / "metrics.csv").write_text("step,val/acc\n0,zero\n")
    (sweep / "weight_decay=1.0,seed=1" / "config.yaml").unlink()
    with pytest.warns(SkippedRunWarning) as caught:
        wide = dynamics_lab.load_sweep(sweep)
    assert sorted(wide["run_id"].unique()) == ["weight_decay=0.0,seed=1",
                                              "weight_decay=1.0,seed=0"]
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2 and all("\n" not in m for m in messages)
    assert "skipping run weight_decay=0.0,seed=0" in messages[0] and "zero" in messages[0]
    assert "skipping run weight_decay=1.0,seed=1" in messages[1]


def test_many_sweeps_load_as_one_frame_by_directory_or_glob(tmp_path, sweep):
    other = fake_sweep(tmp_path, "20260102-000000-bbbb", [1.0, 2.0], seeds=(0,))
    with pytest.raises(FileNotFoundError, match="load_sweeps"):
        dynamics_lab.load_sweep(tmp_path / "grokking")
    both = dynamics_lab.load_sweeps(tmp_path / "grokking")
    assert both.groupby("sweep_id")["run_id"].nunique().to_dict() == {
        sweep.name: 4, other.name: 2}
    globbed = dynamics_lab.load_sweeps(str(tmp_path / "grokking" / "*-bbbb"))
    assert set(globbed["sweep_id"]) == {other.name}
    with pytest.raises(FileNotFoundError, match="no sweeps"):
        dynamics_lab.load_sweeps(str(tmp_path / "nothing*"))


def test_compare_puts_two_sweeps_verdicts_side_by_side_per_grid_point(tmp_path, sweep):
    other = fake_sweep(tmp_path, "20260102-000000-bbbb", [1.0, 2.0], delays=[2.0, 3.0])
    table = dynamics_lab.compare(sweep, other)
    assert table.index.name == "optim.weight_decay"
    assert table.index.tolist() == [0.0, 1.0, 2.0]
    assert table.loc[1.0, ("seeds", sweep.name)] == "2/2"
    assert table.loc[0.0, ("seeds", sweep.name)] == "0/2"
    assert table.loc[1.0, ("delay_ratio", sweep.name)] == 4.5
    assert table.loc[1.0, ("delay_ratio", other.name)] == 2.5
    assert pd.isna(table.loc[0.0, ("seeds", other.name)])  # a point only one sweep ran
    labelled = dynamics_lab.compare(dynamics_lab.load_sweep(sweep), other, labels=("old", "new"))
    assert labelled.loc[2.0, ("delay_ratio", "new")] == 3.5
