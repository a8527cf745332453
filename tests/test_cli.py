"""End to end through the command line: a tiny run, a tiny sweep, report, show, bad input."""

import json
import os

import pandas as pd
import pytest
import torch
from conftest import sets
from typer.testing import CliRunner

from dynamics_lab.cli import app
from dynamics_lab.tracking.rundir import RunDir

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])



def only_run_dir(root):
    dirs = [p.parent for p in root.rglob("meta.json")]
    assert len(dirs) == 1
    return dirs[0]


def test_tiny_run_writes_the_run_directory(runs_root, tiny_overrides):
    result = invoke("run", "grokking", *sets(tiny_overrides), "--seed", 1)
    assert result.exit_code == 0, result.output
    run = only_run_dir(runs_root)
    assert run.parent.parent == runs_root / "grokking"
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "meta.json", "metrics.csv", "verdict.json", "checkpoints"} <= names
    assert RunDir(run).has_checkpoint()
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["seed"] == 1 and meta["device"] == "cpu"
    assert {"commit", "dirty"} <= set(meta["git"]) and meta["argv"]
    assert meta["started"] and meta["ended"]
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["step"].tolist() == [0, 10, 20, 30, 40]
    assert metrics[["train/acc", "val/acc", "train/loss", "val/loss"]].notna().all().all()
    assert metrics["train/batch_loss"].notna().sum() == 4  # steps 0..30
    verdict = json.loads((run / "verdict.json").read_text())
    assert verdict["phenomenon"] == "grokking" and verdict["detected"] in (True, False)
    assert verdict["summary"] in result.output
    shown = invoke("show", run)
    assert shown.exit_code == 0 and "status: completed" in shown.output


def test_same_seed_same_metrics(tmp_path, tiny_overrides):
    frames = []
    for out in ("a", "b"):
        result = invoke("run", "grokking", *sets(tiny_overrides), "--out", tmp_path / out)
        assert result.exit_code == 0
        frames.append(pd.read_csv(only_run_dir(tmp_path / out) / "metrics.csv"))
    pd.testing.assert_frame_equal(frames[0], frames[1])


def test_sweep_runs_reports_and_summarizes(runs_root, tiny_overrides, tmp_path):
    grid = ["sweep.grid={optim.weight_decay: [0.0, 1.0], task.train_fraction: [0.5]}"]
    result = invoke("run", "grokking", "--sweep", "--workers", 2, *sets(tiny_overrides + grid))
    assert result.exit_code == 0, result.output
    assert "weight_decay" in result.output and "summary of 2 run(s)" in result.output
    sweep = next(runs_root.rglob("sweep.json")).parent
    manifest = json.loads((sweep / "sweep.json").read_text())
    assert [r["overrides"]["optim.weight_decay"] for r in manifest["runs"]] == [0.0, 1.0]
    for entry in manifest["runs"]:
        meta = json.loads((sweep / entry["run_id"] / "meta.json").read_text())
        assert meta["status"] == "completed"
    out = tmp_path / "results"
    report = invoke("report", "grokking", "--out", out)
    assert report.exit_code == 0, report.output
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 2 and {"status", "detected", "delay_ratio"} <= set(summary.columns)
    assert (out / "accuracy_curves.png").stat().st_size > 0
    assert (out / "phase_diagram.png").stat().st_size > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_failing_run_does_not_stop_the_sweep(runs_root, tiny_overrides):
    # Asking for CUDA where there is none fails that run inside its worker.
    grid = ["sweep.grid={trainer.device: [cuda, cpu]}"]
    result = invoke("run", "grokking", "--sweep", *sets(tiny_overrides + grid))
    assert result.exit_code == 1, result.output  # a sweep with a failure says so
    assert "1 run(s) did not finish" in result.output
    assert "device=cuda,seed=0: failed: ValueError: trainer.device=cuda but no" in result.output
    statuses = {p.parent.name: json.loads(p.read_text())["status"]
                for p in runs_root.rglob("meta.json")}
    assert sorted(statuses.values()) == ["completed", "failed"]
    failed = next(p.parent for p in runs_root.rglob("meta.json") if "cuda" in p.parent.name)
    assert "no CUDA device" in json.loads((failed / "meta.json").read_text())["error"]


def test_diverging_run_is_recorded_as_diverged(runs_root, tiny_overrides):
    result = invoke("run", "grokking", *sets(tiny_overrides + ["optim.name=sgd", "optim.lr=1e30"]))
    assert result.exit_code == 0, result.output
    run = only_run_dir(runs_root)
    assert json.loads((run / "meta.json").read_text())["status"] == "diverged"
    assert (run / "verdict.json").exists()
    assert "diverged" in result.output


@pytest.mark.parametrize("args, message", [
    (["run", "grokkin"], "did you mean 'grokking'"),
    (["run", "grokking", "--set", "optim.lrr=1"], "did you mean 'optim.lr'"),
    (["run", "grokking", "--set", "task.train_fraction=2"], "task.train_fraction"),
    (["run", "grokking", "--profile", "huge"], "unknown profile"),
    (["run", "grokking", "--set", "task.op=div", "--set", "task.p=91"], "prime"),
    (["show", "/nonexistent"], "not a directory"),
    (["report", "grokking", "--runs", "/nonexistent"], "no runs at"),
])
def test_bad_input_fails_cleanly_and_writes_nothing(runs_root, args, message):
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert not runs_root.exists() or not any(runs_root.rglob("meta.json"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_out_is_a_clear_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = invoke("run", "grokking", "--out", locked)
    assert result.exit_code == 2 and "cannot write runs" in result.output


def test_unwritable_out_under_a_file_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = invoke("run", "grokking", "--out", blocker / "runs")
    assert result.exit_code == 2 and "cannot write runs" in result.output


def test_list_names_everything():
    result = invoke("list")
    assert result.exit_code == 0
    assert "grokking" in result.output and "modular_arithmetic" in result.output
