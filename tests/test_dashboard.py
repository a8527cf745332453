"""Dashboards as code: each phenomenon's panels resolved against a sweep, built offline into a
wandb-workspaces Workspace filtered to the sweep's group."""

import json

import pytest
import yaml

from dynamics_lab.config import load_experiment
from dynamics_lab.report.dashboard import DashboardError, build_workspace, write_dashboard


def fake_sweep(root, experiment, grid, header, overrides=()):
    """A sweep directory as a run leaves it: manifest, one run with config, meta, CSV header."""
    sweep = root / experiment / "20261129-000000-beef"
    run = sweep / "run0"
    run.mkdir(parents=True)
    config = load_experiment(experiment, overrides=list(overrides)).to_dict()
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "meta.json").write_text(json.dumps({"status": "completed", "seed": 0}))
    (run / "metrics.csv").write_text(",".join(["step", *header]) + "\n0," +
                                     ",".join("1" for _ in header) + "\n")
    (sweep / "sweep.json").write_text(json.dumps(
        {"experiment": experiment, "grid": grid, "runs": [{"run_id": "run0", "overrides": {}}]}))
    return sweep


def test_grokking_dashboard_groups_accuracy_by_the_swept_keys_and_draws_the_phase_diagram(
        tmp_path):
    grid = {"optim.weight_decay": [0.0, 1.0], "task.train_fraction": [0.3, 0.5]}
    sweep = fake_sweep(tmp_path, "grokking", grid,
                       ["train/acc", "val/acc", "train/loss", "val/loss", "train/batch_loss"])
    path, url = write_dashboard(sweep, publish=False)
    assert url is None and path == sweep / "dashboard.json"
    spec = json.loads(path.read_text())
    assert spec["group"] == sweep.name and spec["key_metric"]["name"] == "verdict/delay_ratio"
    by_title = {p["title"]: p for p in spec["panels"]}
    accuracy = by_title["train and validation accuracy"]
    assert accuracy["y"] == ["train/acc", "val/acc"]
    assert accuracy["group_by"] == ["optim.weight_decay", "task.train_fraction"]
    phase = next(p for p in spec["panels"] if p["kind"] == "scatter")
    assert (phase["x"], phase["y"], phase["color"]) == (
        "optim.weight_decay", ["task.train_fraction"], "verdict/delay_ratio")

    workspace = build_workspace(spec)  # offline: nothing is sent
    (section,) = workspace.sections
    assert [p.title for p in section.panels] == [p["title"] for p in spec["panels"]]
    assert workspace.runset_settings.filters  # the sweep's group only
    assert [g.name for g in workspace.runset_settings.groupby] == list(grid)


def test_edge_of_stability_dashboard_plots_sharpness_with_its_threshold(tmp_path):
    sweep = fake_sweep(tmp_path, "edge_of_stability", {"optim.lr": [0.1, 0.2]},
                       ["train/loss", "hessian/lambda_max", "hessian/threshold"])
    spec = json.loads(write_dashboard(sweep, publish=False)[0].read_text())
    sharp = spec["panels"][0]
    assert "hessian/lambda_max" in sharp["y"] and "hessian/threshold" in sharp["y"]
    assert sharp["group_by"] == ["optim.lr"]
    assert not [p for p in spec["panels"] if p["kind"] == "scatter"]
    assert len(build_workspace(spec).sections[0].panels) == len(spec["panels"])


def test_stepwise_dashboard_expands_mode_prefixes_to_the_logged_keys(tmp_path):
    header = ["train/loss", "modes/strength_0", "modes/strength_1", "modes/strength_2"]
    sweep = fake_sweep(tmp_path, "stepwise", {"model.init_scale": [0.01, 0.1]}, header)
    spec = json.loads(write_dashboard(sweep, publish=False)[0].read_text())
    strengths = next(p for p in spec["panels"] if p["title"].startswith("mode strengths"))
    assert strengths["y"] == ["modes/strength_0", "modes/strength_1", "modes/strength_2"]


def test_not_a_sweep_is_a_clear_error(tmp_path):
    with pytest.raises(DashboardError, match="not a sweep directory"):
        write_dashboard(tmp_path, publish=False)
