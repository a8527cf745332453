"""W&B random and Bayes searches without a W&B server: the sweep file they start from, the run an
agent's off-grid parameters make (or fail, when the schema refuses them), a run the sweep stops
early recorded as stopped rather than failed, and load_sweep / dynlab report over such runs."""

import json

import pytest
import yaml
from conftest import sets
from typer.testing import CliRunner

from dynamics_lab import load_sweep
from dynamics_lab.cli import app
from dynamics_lab.config import load_experiment
from dynamics_lab.report import write_report
from dynamics_lab.report.tables import sweep_table
from dynamics_lab.schema import ConfigError
from dynamics_lab.sweep.wandb_runs import STOPPED, exit_code, make_run
from dynamics_lab.sweep.wandb_sweep import sweep_spec
from dynamics_lab.tracking.rundir import MANIFEST, RunDir, Status

GRID = "sweep.grid={optim.weight_decay: [0.0, 1.0]}"
LR_RANGE = ("sweep.wandb.parameters.optim.lr={min: 0.0001, max: 0.1, "
            "distribution: log_uniform_values}")
BAYES = [GRID, LR_RANGE, "sweep.wandb.method=bayes"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])



def prepare(runs_root, overrides):
    result = invoke("run", "grokking", "--sweep", "--launcher", "wandb", *sets(overrides))
    assert result.exit_code == 0, result.output
    return next(runs_root.rglob(MANIFEST)).parent


def agent_call(monkeypatch, sweep, overrides, params):
    """One `wandb agent` call, its wandb.config given as the agent gives it."""
    monkeypatch.setattr("dynamics_lab.sweep.wandb_sweep.agent_params", lambda: dict(params))
    return invoke("agent-run", "grokking", "--sweep-dir", sweep, *sets(overrides))


def metas(sweep):
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/meta.json")}


def test_a_bayes_search_spec_holds_the_range_beside_the_grid_and_prepares_no_run(
        runs_root, tiny_overrides):
    sweep = prepare(runs_root, tiny_overrides + BAYES + ["sweep.seeds=[0, 1]"])
    spec = yaml.safe_load((sweep / "wandb_sweep.yaml").read_text())
    assert spec["method"] == "bayes"
    assert spec["parameters"] == {
        "optim.weight_decay": {"values": [0.0, 1.0]},
        "optim.lr": {"min": 0.0001, "max": 0.1, "distribution": "log_uniform_values"},
        "seed": {"values": [0, 1]}}
    assert spec["metric"] == {"name": "verdict/delay_ratio", "goal": "maximize"}
    assert metas(sweep) == {}, "a search's agents make its runs; none waits pending"
    manifest = json.loads((sweep / MANIFEST).read_text())
    assert manifest["search"]["method"] == "bayes" and manifest["runs"] == []
    assert list(manifest["grid"]) == ["optim.weight_decay", "optim.lr"]


def test_random_search_over_grid_values_and_hyperband_on_a_training_metric(tmp_path):
    config = load_experiment("grokking", "quick", [
        "sweep.wandb.method=random", "sweep.wandb.metric=val/acc", "sweep.wandb.goal=maximize",
        "sweep.wandb.early_terminate={type: hyperband, min_iter: 3}", "sweep.wandb.run_cap=20"])
    spec = sweep_spec(config, tmp_path, "grokking", [])
    assert spec["method"] == "random" and spec["run_cap"] == 20
    assert spec["early_terminate"] == {"type": "hyperband", "min_iter": 3}
    assert spec["metric"] == {"name": "val/acc", "goal": "maximize"}
    assert all("values" in p for p in spec["parameters"].values())


@pytest.mark.parametrize("overrides, says", [
    ([LR_RANGE], "a grid sweep needs values; for a range set sweep.wandb.method=random or bayes"),
    (["sweep.wandb.method=random", "sweep.wandb.early_terminate={type: hyperband}"],
     "hyperband stops runs on a metric logged while they train"),
    (["sweep.wandb.method=random", "sweep.wandb.parameters.optim.lr={min: -1, max: 0.1}"],
     "optim.lr"),
    (["sweep.wandb.method=random", "sweep.wandb.parameters.optim.lr={min: 0.1, max: 1, "
      "distribution: loguniform}"], "unknown distribution 'loguniform'"),
])
def test_a_search_w_and_b_would_refuse_is_a_one_line_error(tmp_path, overrides, says):
    config = load_experiment("grokking", "quick", overrides)
    with pytest.raises(ConfigError, match="^.*$") as error:
        sweep_spec(config, tmp_path, "grokking", [])
    assert says in str(error.value) and "\n" not in str(error.value)


def test_off_grid_values_make_runs_that_load_sweep_and_report_read(runs_root, tiny_overrides,
                                                                    monkeypatch):
    overrides = tiny_overrides + BAYES
    sweep = prepare(runs_root, overrides)
    for lr in (0.0123, 0.002):  # values no grid holds, as a Bayes search samples them
        result = agent_call(monkeypatch, sweep, overrides,
                            {"optim.weight_decay": 1, "optim.lr": lr, "seed": 0})
        assert result.exit_code == 0, result.output
    assert {k: m["status"] for k, m in metas(sweep).items()} == {
        "weight_decay=1.0,lr=0.0123,seed=0": "completed",
        "weight_decay=1.0,lr=0.002,seed=0": "completed"}
    manifest = json.loads((sweep / MANIFEST).read_text())
    assert manifest["grid"] == {"optim.weight_decay": [1.0], "optim.lr": [0.002, 0.0123]}
    runs = load_sweep(sweep).groupby("run_id").last()
    assert sorted(runs["optim.lr"]) == [0.002, 0.0123] and set(runs["status"]) == {"completed"}
    written = write_report(runs_root / "grokking", out=runs_root / "report")
    assert (runs_root / "report" / "summary.csv") in written


def test_a_value_the_schema_refuses_is_a_failed_run_with_that_line(runs_root, tiny_overrides,
                                                                   monkeypatch):
    overrides = tiny_overrides + BAYES
    sweep = prepare(runs_root, overrides)
    result = agent_call(monkeypatch, sweep, overrides,
                        {"optim.weight_decay": 0.0, "optim.lr": -0.5, "seed": 0})
    assert result.exit_code == 1
    (meta,) = metas(sweep).values()
    assert meta["status"] == "failed"
    assert meta["error"].startswith("W&B parameters refused: optim.lr")
    assert "\n" not in meta["error"] and meta["error"] in result.output
    table = sweep_table(sweep)  # the report's table of every run, started or not
    assert table["status"].tolist() == ["failed"] and table["optim.lr"].tolist() == [-0.5]


def test_a_run_the_sweep_stops_early_is_killed_not_failed_and_exits_0(runs_root, tiny_overrides,
                                                                      monkeypatch):
    overrides = tiny_overrides + BAYES
    sweep = prepare(runs_root, overrides)

    def stopped_by_hyperband(run_dir, echo=print):  # the lifecycle's record of a SIGTERM
        run = RunDir(run_dir)
        run.start("cpu")
        return Status(run.finish(Status.KILLED, "interrupted by SIGTERM")["status"])

    monkeypatch.setattr("dynamics_lab.train.worker.run_one", stopped_by_hyperband)
    result = agent_call(monkeypatch, sweep, overrides,
                        {"optim.weight_decay": 1.0, "optim.lr": 0.01, "seed": 0})
    assert result.exit_code == 0, "W&B counts a non-zero exit as a failed run"
    (meta,) = metas(sweep).values()
    assert meta["status"] == Status.KILLED and meta["error"] == f"{STOPPED}: interrupted by SIGTERM"
    assert sweep_table(sweep)["status"].tolist() == ["killed"]


def test_exit_codes_the_agent_sees(runs_root, tiny_overrides, tmp_path):
    config = load_experiment("grokking", "quick", tiny_overrides + BAYES)
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / MANIFEST).write_text(json.dumps({"experiment": "grokking", "grid": {}, "runs": []}))
    path, refused = make_run(config, sweep, {"seed": 0, "optim.lr": 0.01})
    assert refused is None and path.name == "lr=0.01,seed=0"
    assert exit_code(path, Status.COMPLETED) == 0 and exit_code(path, Status.DIVERGED) == 0
    assert exit_code(path, Status.FAILED) == 1
