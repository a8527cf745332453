"""What a config or the command line names stays under the runs root; one process per run dir
(stale locks taken over); lost meta.json recovered; `dynlab show` of a live run."""

import json
import os
import platform
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from conftest import sets
from typer.testing import CliRunner

from dynamics_lab.cli import app
from dynamics_lab.config import load_experiment
from dynamics_lab.sweep import expand, prepare_sweep, reopen_sweep, single
from dynamics_lab.tracking.lock import LEASE_S, LockedError, RunLock
from dynamics_lab.tracking.rundir import RunDir, RunDirError, Status, now, safe_component
from dynamics_lab.train.runner import execute


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])



def files(root):
    return sorted(p for p in Path(root).rglob("*"))


@pytest.mark.parametrize("name", ["../../etc", "/abs", "a/b", "..", "x\0y", "n" * 300])
def test_unsafe_path_components_are_refused(name):
    with pytest.raises(RunDirError, match="names a directory under the runs root"):
        safe_component(name, "run id")
    assert safe_component("weight_decay=1.0,seed=0", "run id") == "weight_decay=1.0,seed=0"


def test_a_hostile_experiment_name_writes_nothing(tmp_path):
    experiment = yaml.safe_load(Path("experiments/grokking.yaml").read_text())
    experiment["name"] = "../../escaped"
    path = tmp_path / "exp" / "hostile.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(experiment))
    out = tmp_path / "a" / "b" / "runs"
    before = files(tmp_path)
    result = invoke("run", path, "--out", out)
    assert result.exit_code == 2 and "experiment name '../../escaped'" in result.output
    assert files(tmp_path) == before


@pytest.mark.parametrize("value, why", [("a/b", "path separator"), ('"a\\0b"', "NUL"),
                                        ("n" * 300, "longer than")])
def test_grid_values_that_would_escape_are_refused(tmp_path, tiny_overrides, value, why):
    result = invoke("run", "grokking", "--sweep", "--out", tmp_path / "runs",
                    *sets(tiny_overrides + [f"sweep.grid={{description: [{value}, c]}}"]))
    assert result.exit_code == 2 and "run id" in result.output and why in result.output
    assert not (tmp_path / "runs").exists()


@pytest.fixture
def run(tmp_path, tiny_overrides):
    config = load_experiment("grokking", "quick", tiny_overrides + ["logging.wandb=false"])
    return RunDir(prepare_sweep(config, [single(config)], tmp_path / "s")[0])


def write_lock(run, pid, host=None, age_s=0.0):
    run.lock_path.write_text(json.dumps({"pid": pid, "host": host or platform.node()}))
    os.utime(run.lock_path, (time.time() - age_s, time.time() - age_s))


def test_a_run_held_by_a_live_process_is_refused_and_left_alone(run):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        write_lock(run, sleeper.pid)
        before = run.meta_path.read_text()
        result = invoke("resume", run.path)
        assert result.exit_code == 2 and f"in use by pid {sleeper.pid}" in result.output
        with pytest.raises(LockedError):
            execute(run, echo=lambda *_: None)
        assert run.meta_path.read_text() == before and run.lock_path.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("holder", ["dead pid here", "silent other host"])
def test_a_stale_lock_is_taken_over(run, holder):
    if holder == "dead pid here":
        gone = subprocess.Popen(["true"])
        gone.wait()
        write_lock(run, gone.pid)
    else:
        write_lock(run, 1, host="elsewhere", age_s=LEASE_S + 1)
    assert execute(run, echo=lambda *_: None).status == Status.COMPLETED
    assert not run.lock_path.exists()


def test_a_fresh_lock_from_another_host_is_respected(run):
    write_lock(run, 1, host="elsewhere")
    with pytest.raises(LockedError, match="on elsewhere"):
        RunLock(run.path).acquire()


@pytest.mark.parametrize("ending", ["completed", "failed", "refused"])
def test_the_lock_is_released_on_every_way_out(run, ending):
    if ending == "failed":
        run.config_path.write_text(run.config_path.read_text().replace("device: auto",
                                                                       "device: cuda"))
    if ending == "refused":
        run.update_meta(status=Status.COMPLETED)
        with pytest.raises(RunDirError, match="already ended"):
            execute(run, echo=lambda *_: None)
    else:
        result = execute(run, echo=lambda *_: None)
        assert result.status == (Status.COMPLETED if ending == "completed" else Status.FAILED)
    assert not run.lock_path.exists()


def test_a_run_whose_meta_json_is_lost_resumes_from_its_checkpoint(run):
    assert execute(run, echo=lambda *_: None).status == Status.COMPLETED
    run.meta_path.unlink()
    (run.path / "verdict.json").unlink()
    result = invoke("resume", run.path)
    assert result.exit_code == 0, result.output
    meta = run.meta
    assert meta["status"] == "completed" and meta["recovered"] and meta["resumed_at_steps"] == [40]


def test_reopening_a_sweep_rebuilds_lost_meta_and_sets_unrecoverable_runs_aside(
        tmp_path, tiny_overrides):
    overrides = tiny_overrides + ["sweep.grid={optim.weight_decay: [0.0, 1.0]}"]
    config = load_experiment("grokking", "quick", overrides)
    specs = expand(config)
    lost_meta, lost_config = prepare_sweep(config, specs, tmp_path / "sweep")
    (lost_meta / "meta.json").unlink()
    (lost_config / "config.yaml").unlink()
    dirs, unrecoverable = reopen_sweep(config, specs, tmp_path / "sweep")
    assert dirs == [lost_meta] and unrecoverable == {lost_config: "config.yaml is missing"}
    meta = RunDir(lost_meta).meta
    assert meta["status"] == "killed" and meta["seed"] == 0 and meta["recovered"]


def test_show_leads_with_status_and_keeps_the_config_behind_a_flag(run):
    started = datetime.fromisoformat(now()) - timedelta(seconds=2)  # a run begun 2 s ago
    run.update_meta(status=Status.RUNNING, started=started.isoformat(), wall_time_s=None)
    shown = invoke("show", run.path)
    assert shown.exit_code == 0, shown.output
    first = shown.output.splitlines()[0]
    assert first.startswith("status: running  running for ")
    assert float(first.split("running for ")[1].split("s")[0]) >= 1.0
    assert "no live process holds it" in first and "optim:" not in shown.output
    assert "optim:" in invoke("show", run.path, "--config").output
