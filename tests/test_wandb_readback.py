"""The W&B side read back from offline runs: curves on the training step, the sweep's group with
every swept key in the config, tags and notes, the run's files as an artifact; the dashboard as
a wandb-workspaces view document that loads back; booleans that stay booleans."""

import pandas as pd
import pytest
from conftest import TINY_GROKKING
from typer.testing import CliRunner
from wandb_records import OfflineRun

from dynamics_lab.cli import app
from dynamics_lab.phenomena.dashboard import STEP_METRIC
from dynamics_lab.report.dashboard import WORKSPACE_FILE, load_workspace
from dynamics_lab.tracking.wandb import report_frame

GRID = "sweep.grid={optim.weight_decay: [0.0, 1.0], task.train_fraction: [0.5]}"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One offline sweep for the whole module (two runs, W&B on, tags and notes)."""
    tmp = tmp_path_factory.mktemp("wandb")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WANDB_MODE", "offline")
        env.delenv("WANDB_API_KEY", raising=False)
        env.setenv("HOME", str(tmp / "home"))  # no ~/.netrc login
        env.setenv("WANDB_DIR", str(tmp / "wandb-dir"))
        for name in ("WANDB_TAGS", "WANDB_NOTES"):  # `--tag`/`--notes` set them: restored
            env.setenv(name, "")
            env.delenv(name)
        sets = [x for o in [*TINY_GROKKING, GRID, "sweep.seeds=[0]"] for x in ("--set", o)]
        result = CliRunner().invoke(app, ["run", "grokking", "--sweep", "--wandb", "--out",
                                          str(tmp / "runs"), "--tag", "baseline", "--tag",
                                          "p23", "--notes", "tiny check", *sets])
        assert result.exit_code == 0, result.output
        (manifest,) = (tmp / "runs").rglob("sweep.json")
        yield manifest.parent


def test_curves_are_on_the_training_step_and_runs_group_by_every_swept_key(sweep):
    runs = [OfflineRun(p) for p in sorted(sweep.iterdir()) if p.is_dir()]
    assert len(runs) == 2
    for run in runs:
        assert run.step_metrics["*"] == STEP_METRIC  # every metric is plotted against it
        rows = [r for r in run.history if any(k.startswith(("train/", "val/")) for k in r)]
        steps = [r[STEP_METRIC] for r in rows]
        assert steps == sorted(steps) and max(steps) == 40  # the training step, to max_steps
        assert max(r["_step"] for r in rows) != 40  # W&B's row counter is not it
        assert run.run.run_group == sweep.name
        assert {"optim", "task"} <= set(run.config)
    configs = [r.config for r in runs]
    assert sorted(c["optim"]["weight_decay"] for c in configs) == [0.0, 1.0]
    assert {c["task"]["train_fraction"] for c in configs} == {0.5}


def test_tags_notes_summary_types_and_the_run_files_artifact(sweep):
    run = OfflineRun(next(p for p in sorted(sweep.iterdir()) if p.is_dir()))
    assert list(run.run.tags) == ["baseline", "p23"] and run.run.notes == "tiny check"
    assert run.summary["verdict/detected"] is False  # a boolean, not the text 'False'
    (artifact,) = run.artifacts
    assert artifact.type == "run-files"
    assert sorted(e.path for e in artifact.manifest.contents) == [
        "config.yaml", "metrics.parquet", "verdict.json"]


def test_tags_and_notes_are_stored_with_every_run(sweep):
    """`--tag`/`--notes` are overrides of logging.tags/notes: in config.yaml, so a resumed run
    or a W&B agent's run keeps them, and read from there by the W&B run (not the environment)."""
    import os

    import yaml

    run_dirs = [p for p in sorted(sweep.iterdir()) if p.is_dir()]
    for run_dir in run_dirs:
        logging = yaml.safe_load((run_dir / "config.yaml").read_text())["logging"]
        assert logging["tags"] == ["baseline", "p23"] and logging["notes"] == "tiny check"
        assert OfflineRun(run_dir).run.notes == "tiny check"
    assert "WANDB_TAGS" not in os.environ and "WANDB_NOTES" not in os.environ


def test_tags_come_from_the_config_alone(tmp_path, monkeypatch):
    from dynamics_lab.tracking.wandb import make_wandb_logger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    config = {"name": "x", "logging": {"tags": ["a: b", "c,d"], "notes": "from the config"}}
    logger, offline = make_wandb_logger(tmp_path, config, "run", "group")
    run = logger.experiment
    assert offline and list(run.tags) == ["a: b", "c,d"] and run.notes == "from the config"
    run.finish()


def test_dashboard_is_a_workspace_document_that_loads_back(sweep):
    result = CliRunner().invoke(app, ["dashboard", "grokking", "--runs", str(sweep),
                                      "--no-publish"])
    assert result.exit_code == 0, result.output
    workspace = load_workspace(sweep / WORKSPACE_FILE)
    assert [g.name for g in workspace.runset_settings.groupby] == [
        "optim.weight_decay", "task.train_fraction"]
    assert sweep.name in repr(workspace.runset_settings.filters)
    assert workspace.settings.x_axis == STEP_METRIC
    lines = [p for p in workspace.sections[0].panels if type(p).__name__ == "LinePlot"]
    assert lines and all(p.x.name == STEP_METRIC for p in lines)
    assert all(p.groupby is None and p.groupby_aggfunc == "mean" for p in lines)  # all keys
    assert workspace._to_model().spec.section.panel_bank_section_config  # it can be saved


def test_the_report_table_keeps_booleans_and_numbers():
    import wandb

    table = pd.DataFrame({"detected": [True, False], "flag": [True, None],
                          "delay": [1.5, None], "steps": [[1, 2], None]})
    frame = report_frame(table)
    logged = wandb.Table(dataframe=frame)
    rows = dict(zip(logged.columns, zip(*logged.data)))
    assert rows["detected"] == (True, False) and rows["flag"] == (True, None)
    assert rows["delay"][0] == 1.5 and rows["steps"][0] == "[1, 2]"
