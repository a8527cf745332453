"""Ctrl-C and SIGTERM: a run stops at its next checkpoint, is recorded `killed` with its end time
and resumes to the metrics it would have logged uninterrupted; a sweep stops its workers,
launches nothing more, and `--resume-sweep` finishes it."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import sets
from typer.testing import CliRunner

from dynamics_lab.cli import app
from dynamics_lab.config import load_experiment
from dynamics_lab.sweep import expand, prepare_sweep, single
from dynamics_lab.tracking.checkpoint import checkpoint_step
from dynamics_lab.tracking.rundir import RunDir, Status
from dynamics_lab.train.ensemble import execute_ensemble
from dynamics_lab.train.runner import execute

REPO = Path(__file__).resolve().parents[1]
# Minibatches and a checkpoint every 20 steps; long enough that a signal lands mid-run.
LONG = ["trainer.batch_size=32", "trainer.max_steps=600", "trainer.checkpoint_every=20",
        "logging.wandb=false"]


def quiet(*_):
    pass


def prepared(root, overrides):
    config = load_experiment("grokking", "quick", overrides)
    return RunDir(prepare_sweep(config, [single(config)], root)[0])


def wait_for(predicate, timeout=120.0):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.005)


def signal_self_when(ready, sig: int) -> threading.Thread:
    """Send `sig` to this process (as Ctrl-C or a scheduler would) once `ready()`."""
    def send():
        wait_for(ready)
        os.kill(os.getpid(), sig)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def checkpointed(root: Path) -> bool:
    """Some run under `root` has written a checkpoint."""
    return any(RunDir(p.parent).has_checkpoint() for p in root.rglob("meta.json"))


def metrics(run):
    return pd.read_csv(run.metrics_path)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_checkpoints_and_resumes_to_the_uninterrupted_metrics(
        tmp_path, tiny_overrides, sig):
    reference = prepared(tmp_path / "ref", tiny_overrides + LONG)
    stopped = prepared(tmp_path / "stop", tiny_overrides + LONG)
    assert execute(reference, echo=quiet).status == Status.COMPLETED
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    signal_self_when(stopped.last_checkpoint.exists, sig)
    result = execute(stopped, echo=quiet)
    meta = stopped.meta
    assert result.status == Status.KILLED and meta["status"] == "killed"
    assert meta["ended"] and signal.Signals(sig).name in meta["error"]
    step = checkpoint_step(stopped.last_checkpoint)
    assert 20 < step < 600, "a checkpoint is written where training stopped"
    assert metrics(stopped)["step"].max() <= step
    assert not stopped.lock_path.exists()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before

    assert execute(stopped, resume=True, echo=quiet).status == Status.COMPLETED
    assert stopped.meta["resumed_at_steps"] == [step]
    pd.testing.assert_frame_equal(metrics(reference), metrics(stopped), check_exact=True)


def test_an_interrupted_ensemble_resumes_to_the_uninterrupted_metrics(tmp_path, tiny_overrides):
    # Members differ in seed and weight decay, draw their own minibatches and measure sharpness
    # with warm-started Lanczos: all of it must come back from the shared checkpoint.
    overrides = tiny_overrides + LONG + [
        "sweep.grid={optim.weight_decay: [0.0, 1.0]}", "sweep.seeds=[0]",
        "measure.hessian={every: 50, probe_size: 64}"]
    config = load_experiment("grokking", "quick", overrides)
    reference = [RunDir(p) for p in prepare_sweep(config, expand(config), tmp_path / "ref")]
    assert [r.status for r in execute_ensemble(reference, echo=quiet)] == ["completed"] * 2
    runs = [RunDir(p) for p in prepare_sweep(config, expand(config), tmp_path / "s")]
    trained = lambda: runs[0].has_checkpoint() and len(metrics(runs[0])) > 3  # noqa: E731
    signal_self_when(trained, signal.SIGINT)
    results = execute_ensemble(runs, echo=quiet)
    assert [r.status for r in results] == [Status.KILLED] * 2
    assert all(r.meta["ended"] and not r.lock_path.exists() for r in runs)
    step = checkpoint_step(runs[0].last_checkpoint)
    assert 0 < step < 600 and checkpoint_step(runs[1].last_checkpoint) == step

    assert [r.status for r in execute_ensemble(runs, echo=quiet)] == ["completed"] * 2
    for got, expected in zip(runs, reference):
        assert got.meta["resumed_at_steps"] == [step]
        pd.testing.assert_frame_equal(metrics(got), metrics(expected), check_exact=True)


def test_an_ensemble_regrouped_differently_starts_afresh_saying_why(tmp_path, tiny_overrides):
    config = load_experiment("grokking", "quick", tiny_overrides + LONG + [
        "trainer.max_steps=100000", "sweep.grid={}", "sweep.seeds=[0, 1, 2]"])
    runs = [RunDir(p) for p in prepare_sweep(config, expand(config), tmp_path / "s")]
    trained = lambda: runs[0].has_checkpoint() and len(metrics(runs[0])) > 3  # noqa: E731
    signal_self_when(trained, signal.SIGINT)
    assert {r.status for r in execute_ensemble(runs, echo=quiet)} == {Status.KILLED}
    from dynamics_lab.train.ensemble_checkpoint import ensemble_start

    assert ensemble_start(runs[:2], resume=None) is None  # another grouping: members 0 and 1
    assert "belongs to the ensemble of" in runs[0].meta["restarted"]
    assert not runs[0].metrics_path.exists() and runs[2].has_checkpoint()


def cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, str(REPO / "cli.py"), *map(str, args)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "WANDB_MODE": "disabled"}, **kwargs)



def test_ctrl_c_on_dynlab_run_marks_it_killed_and_says_how_to_resume(tmp_path, tiny_overrides):
    proc = cli("run", "grokking", "--out", tmp_path, *sets(tiny_overrides + LONG
                                                           + ["trainer.max_steps=100000"]))
    wait_for(lambda: checkpointed(tmp_path) or proc.poll() is not None)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    run = RunDir(next(tmp_path.rglob("meta.json")).parent)
    assert run.meta["status"] == "killed" and run.meta["ended"]
    assert f"continue with: dynlab resume {run.path}" in out
    assert checkpoint_step(run.last_checkpoint) > 0 and not run.lock_path.exists()


def test_sigterm_to_a_worker_is_ctrl_c_and_a_second_process_is_refused(tmp_path, tiny_overrides):
    run = prepared(tmp_path / "s", tiny_overrides + LONG + ["trainer.max_steps=100000"])
    worker = subprocess.Popen([sys.executable, "-m", "dynamics_lab.train.worker", str(run.path)],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: run.has_checkpoint() or worker.poll() is not None)
    before = run.metrics_path.read_bytes()
    refused = CliRunner().invoke(app, ["resume", str(run.path)])
    assert refused.exit_code == 2 and f"in use by pid {worker.pid}" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    assert run.metrics_path.read_bytes()[: len(before)] == before  # nothing truncated

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=120) == 130
    meta = run.meta
    assert meta["status"] == "killed" and "SIGTERM" in meta["error"]
    assert checkpoint_step(run.last_checkpoint) > 0 and not run.lock_path.exists()


def statuses(sweep_dir):
    return {p.parent.name: json.loads(p.read_text())["status"]
            for p in sweep_dir.glob("*/meta.json")}


def test_ctrl_c_on_a_sweep_stops_its_workers_and_resume_sweep_finishes_it(
        tmp_path, tiny_overrides):
    overrides = tiny_overrides + LONG + ["trainer.max_steps=400",
                                         "sweep.grid={optim.weight_decay: [0.0, 1.0]}"]
    # The sweep runs here, its workers in their own processes; Ctrl-C reaches the sweep alone.
    signal_self_when(lambda: checkpointed(tmp_path), signal.SIGINT)
    stopped = CliRunner().invoke(app, ["run", "grokking", "--sweep", "--workers", "1", "--out",
                                       str(tmp_path), *sets(overrides)])
    assert stopped.exit_code == 130, stopped.output
    sweep = next(tmp_path.rglob("sweep.json")).parent
    assert sorted(statuses(sweep).values()) == ["killed", "pending"]  # nothing new launched
    assert "--resume-sweep" in stopped.output
    assert not any(RunDir(p).lock_path.exists() for p in sweep.iterdir() if p.is_dir())
    killed = next(p for p, s in statuses(sweep).items() if s == "killed")
    assert "SIGTERM" in RunDir(sweep / killed).meta["error"]
    step = checkpoint_step(RunDir(sweep / killed).last_checkpoint)

    result = CliRunner().invoke(app, ["run", "grokking", "--sweep", "--workers", "2",
                                      "--resume-sweep", str(sweep), *sets(overrides)])
    assert result.exit_code == 0, result.output
    assert set(statuses(sweep).values()) == {"completed"}
    assert RunDir(sweep / killed).meta["resumed_at_steps"] == [step]
