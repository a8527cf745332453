"""Launchers: GPU slots for local workers, a submitit job array, the W&B sweep, --resume-sweep."""

import json
import threading
import time

import pandas as pd
import yaml
from conftest import sets
from typer.testing import CliRunner

from dynamics_lab.cli import app
from dynamics_lab.config import load_experiment
from dynamics_lab.sweep import expand, prepare_sweep
from dynamics_lab.sweep.local import default_workers, launch_local, slot_env
from dynamics_lab.sweep.wandb_sweep import config_for, grid_points
from dynamics_lab.tracking.rundir import RunDir

GRID = "sweep.grid={optim.weight_decay: [0.0, 1.0], task.train_fraction: [0.5]}"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])



def statuses(sweep_dir):
    metas = sweep_dir.glob("*/meta.json")
    return {p.parent.name: json.loads(p.read_text())["status"] for p in metas}


def test_local_workers_each_get_their_own_gpu(tmp_path):
    busy, used, lock = set(), [], threading.Lock()

    def fake_run(job, env):
        gpu = env["CUDA_VISIBLE_DEVICES"]
        with lock:
            assert gpu not in busy, "two running jobs share a GPU"
            busy.add(gpu)
            used.append(gpu)
        time.sleep(0.05)
        with lock:
            busy.discard(gpu)
        return {job[0]: "completed"}

    jobs = [[tmp_path / f"run{i}"] for i in range(6)]
    done = launch_local(jobs, workers=None, gpus=["2", "5"], run=fake_run)
    assert set(done.values()) == {"completed"} and len(done) == 6
    assert set(used) == {"2", "5"}
    assert default_workers(["0", "1", "2"]) == 3 and default_workers(["0"]) == 1
    assert "CUDA_VISIBLE_DEVICES" not in slot_env(3, ["0"])  # one GPU: every worker shares it


def test_slurm_array_through_submitit_local_executor(runs_root, tiny_overrides, tmp_path):
    result = invoke("run", "grokking", "--sweep", "--launcher", "slurm",
                    *sets(tiny_overrides + [GRID, "sweep.slurm.cluster=local"]))
    assert result.exit_code == 0, result.output
    assert "submitted 2 array task(s)" in result.output
    sweep = next(runs_root.rglob("sweep.json")).parent
    launch = json.loads((sweep / "sweep.json").read_text())["launches"][-1]
    assert launch["launcher"] == "slurm" and all(job["id"] for job in launch["jobs"])
    assert sorted(r for job in launch["jobs"] for r in job["runs"]) == sorted(statuses(sweep))

    # The report works while the array runs: unfinished runs show as such.
    early = invoke("report", "grokking", "--runs", sweep, "--out", tmp_path / "early")
    assert early.exit_code == 0, early.output
    assert len(pd.read_csv(tmp_path / "early" / "summary.csv")) == 2

    deadline = time.time() + 300
    while set(statuses(sweep).values()) - {"completed", "failed", "diverged", "killed"}:
        assert time.time() < deadline, statuses(sweep)
        time.sleep(1)
    assert set(statuses(sweep).values()) == {"completed"}
    final = invoke("report", "grokking", "--runs", sweep, "--out", tmp_path / "final")
    assert final.exit_code == 0, final.output
    summary = pd.read_csv(tmp_path / "final" / "summary.csv")
    assert set(summary["status"]) == {"completed"} and "delay_ratio" in summary


def test_wandb_sweep_file_round_trips_to_the_local_grid(runs_root, tiny_overrides):
    grid = "sweep.grid={optim.weight_decay: [0.0, 0.3, 1.0], task.train_fraction: [0.4, 0.5]}"
    overrides = tiny_overrides + [grid, "sweep.seeds=[0, 1]"]
    result = invoke("run", "grokking", "--sweep", "--launcher", "wandb", *sets(overrides))
    assert result.exit_code == 0, result.output
    assert "wandb sweep" in result.output and "wandb agent" in result.output
    sweep = next(runs_root.rglob("sweep.json")).parent
    spec = yaml.safe_load((sweep / "wandb_sweep.yaml").read_text())
    assert spec["method"] == "grid"
    assert spec["metric"] == {"name": "verdict/delay_ratio", "goal": "maximize"}
    assert set(spec["parameters"]) == {"optim.weight_decay", "task.train_fraction", "seed"}
    assert "agent-run" in spec["command"] and str(sweep.resolve()) in spec["command"]

    config = load_experiment("grokking", "quick", overrides + ["logging.wandb=true"])
    local = sorted(json.dumps(s.config.to_dict(), sort_keys=True) for s in expand(config))
    agents = sorted(json.dumps(config_for(config, p).to_dict(), sort_keys=True)
                    for p in grid_points(spec))
    assert agents == local and len(local) == 12
    assert set(statuses(sweep).values()) == {"pending"} and len(statuses(sweep)) == 12


def test_agent_run_executes_the_run_wandb_config_names(runs_root, tiny_overrides, monkeypatch):
    overrides = tiny_overrides + [GRID]
    prepared = invoke("run", "grokking", "--sweep", "--launcher", "wandb", *sets(overrides))
    assert prepared.exit_code == 0, prepared.output
    sweep = next(runs_root.rglob("sweep.json")).parent
    monkeypatch.setattr("dynamics_lab.sweep.wandb_sweep.agent_params",
                        lambda: {"optim.weight_decay": 1, "task.train_fraction": 0.5, "seed": 0})
    result = invoke("agent-run", "grokking", "--sweep-dir", sweep, *sets(overrides))
    assert result.exit_code == 0, result.output
    assert statuses(sweep) == {"weight_decay=0.0,train_fraction=0.5,seed=0": "pending",
                               "weight_decay=1.0,train_fraction=0.5,seed=0": "completed"}


def test_resume_sweep_skips_finished_runs_and_retries_the_rest(runs_root, tiny_overrides):
    overrides = tiny_overrides + [GRID.replace("[0.0, 1.0]", "[0.0, 0.5, 1.0]")]
    config = load_experiment("grokking", "quick", overrides)
    sweep = runs_root / "grokking" / "manual"
    done, failed, lost = prepare_sweep(config, expand(config), sweep)
    RunDir(done).update_meta(status="completed")
    before = (done / "meta.json").read_text()
    RunDir(failed).update_meta(status="failed", error="boom")
    (failed / "metrics.csv").write_text("step,train/loss\n0,9.0\n")
    (lost / "config.yaml").unlink()  # unrecoverable: the others go on

    mismatch = invoke("run", "grokking", "--sweep", "--resume-sweep", sweep,
                      *sets(overrides + ["optim.lr=0.1"]))
    assert mismatch.exit_code == 2 and "optim.lr" in mismatch.output

    result = invoke("run", "grokking", "--sweep", "--resume-sweep", sweep, *sets(overrides))
    assert result.exit_code == 1, result.output  # one run could not be finished
    assert "launching 1" in result.output
    assert f"{lost.name}: unrecoverable: config.yaml is missing" in result.output
    assert (done / "meta.json").read_text() == before
    meta = json.loads((failed / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["attempts"] == 2 and "error" not in meta
    assert pd.read_csv(failed / "metrics.csv")["step"].tolist() == [0, 10, 20, 30, 40]


def test_slurm_without_a_cluster_is_a_clear_error(runs_root, monkeypatch):
    monkeypatch.setattr("dynamics_lab.sweep.slurm.shutil.which", lambda name: None)
    result = invoke("run", "grokking", "--sweep", "--launcher", "slurm")
    assert result.exit_code == 2
    assert "srun not found" in result.output and "sweep.slurm.cluster=local" in result.output
    assert not runs_root.exists()
