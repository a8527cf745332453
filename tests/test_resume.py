"""Resume: a SIGKILLed run resumes to bit-identical metrics; checkpoint state round-trips."""

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import torch
from typer.testing import CliRunner

from dynamics_lab.cli import app
from dynamics_lab.config import load_experiment
from dynamics_lab.sweep import prepare_sweep, single
from dynamics_lab.tasks.base import ResidentBatches
from dynamics_lab.tracking.checkpoint import RandomState
from dynamics_lab.tracking.metrics import MetricsFile, read_metrics
from dynamics_lab.tracking.resume import start_point
from dynamics_lab.tracking.rundir import RunDir
from dynamics_lab.train.runner import execute

# Minibatches, so the resumed run must restore the generator behind the batch order.
RESUMABLE = ["trainer.batch_size=32", "trainer.max_steps=100", "logging.wandb=false"]


def prepared(root, overrides):
    config = load_experiment("grokking", "quick", overrides)
    return prepare_sweep(config, [single(config)], root)[0]


def kill_after_first_checkpoint(run_dir):
    """Train `run_dir` in a worker process and SIGKILL it once its first checkpoint exists."""
    proc = subprocess.Popen([sys.executable, "-m", "dynamics_lab.train.worker", str(run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = RunDir(run_dir).last_checkpoint
    deadline = time.time() + 120
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert RunDir(run_dir).meta["status"] == "running", "the kill must land mid-run"


def test_sigkilled_run_resumes_to_the_uninterrupted_metrics(tmp_path, tiny_overrides, monkeypatch):
    overrides = tiny_overrides + RESUMABLE
    reference = prepared(tmp_path / "ref", overrides)
    # The killed run logs to W&B (offline, no login): its resume continues the same W&B run.
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc login
    killed = prepared(tmp_path / "kill", [*overrides, "logging.wandb=true"])
    with monkeypatch.context() as env:
        env.setenv("WANDB_MODE", "disabled")
        assert execute(RunDir(reference), echo=lambda *_: None).status == "completed"

    kill_after_first_checkpoint(killed)
    wandb_id = json.loads((killed / "meta.json").read_text())["wandb_id"]
    assert wandb_id

    result = CliRunner().invoke(app, ["resume", str(killed)])
    assert result.exit_code == 0, result.output
    # Each attempt opens offline-run-<second>-<id>; two attempts within one second share it.
    ids = {path.name.rsplit("-", 1)[1] for path in (killed / "wandb").glob("offline-run-*")}
    meta = json.loads((killed / "meta.json").read_text())
    assert ids == {wandb_id} and meta["wandb_id"] == wandb_id, \
        "the resumed attempt logs to the same W&B run id"
    assert meta["status"] == "completed" and meta["resumed_at_steps"][0] >= 20
    expected, got = pd.read_csv(reference / "metrics.csv"), pd.read_csv(killed / "metrics.csv")
    assert got["step"].is_unique
    pd.testing.assert_frame_equal(expected, got, check_exact=True)
    assert json.loads((killed / "verdict.json").read_text()) == \
        json.loads((reference / "verdict.json").read_text())


def test_batch_order_resumes_mid_epoch_despite_prefetching():
    x, y = torch.arange(100.0), torch.arange(100)
    reference = [b[1].tolist() for b in itertools.islice(iter(ResidentBatches(x, y, 32, 5)), 24)]
    for consumed in range(0, 18):
        stream = ResidentBatches(x, y, 32, 5)
        batches = iter(stream)
        for _ in range(consumed + 2):  # Lightning has fetched ahead of training
            next(batches)
        resumed = ResidentBatches(x, y, 32, 5, stream.state_at(consumed))
        got = [b[1].tolist() for b in itertools.islice(iter(resumed), 6)]
        assert got == reference[consumed : consumed + 6]


def test_random_state_round_trips_through_a_checkpoint():
    callback = RandomState()
    saved = callback.state_dict()
    torch.save(saved, "/dev/null")  # plain tensors and values: loadable with weights_only
    first = (torch.rand(3), np.random.rand(3), random.random())
    callback.load_state_dict(saved)
    callback.on_train_start(None, None)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2] == again[2]


# A stand-in checkpoint: start_point reads only its global_step (real ones: the SIGKILL and
# float64 tests here, which execute runs).
def fake_checkpoint(run, step):
    run.checkpoint_dir.mkdir()
    torch.save({"global_step": step}, run.last_checkpoint)


def test_a_killed_run_continues_from_its_checkpoint(tmp_path, tiny_overrides):
    run = RunDir(prepared(tmp_path / "s", tiny_overrides))
    metrics = MetricsFile(run.metrics_path)
    for step in range(0, 40, 10):
        metrics.log({"train/loss": 1.0 / (step + 1)}, step=step)
    fake_checkpoint(run, 20)
    run.update_meta(status="killed")
    assert start_point(run) == run.last_checkpoint
    assert read_metrics(run.path)["step"].tolist() == [0, 10, 20]
    assert run.meta["resumed_at_steps"] == [20]


def test_a_failed_run_continues_from_a_sound_checkpoint(tmp_path, tiny_overrides):
    run = RunDir(prepared(tmp_path / "s", tiny_overrides))
    MetricsFile(run.metrics_path).log({"train/loss": 1.0}, step=0)
    fake_checkpoint(run, 20)
    run.update_meta(status="failed", error="No space left on device")
    assert start_point(run) == run.last_checkpoint and run.meta["resumed_at_steps"] == [20]


def test_a_failed_run_with_an_unreadable_checkpoint_starts_afresh(tmp_path, tiny_overrides):
    run = RunDir(prepared(tmp_path / "s", tiny_overrides))
    MetricsFile(run.metrics_path).log({"train/loss": 1.0}, step=0)
    run.checkpoint_dir.mkdir()
    run.last_checkpoint.write_bytes(b"torn")
    run.update_meta(status="failed", error="boom", wandb_id="old")
    assert start_point(run) is None
    meta = run.meta
    assert meta["status"] == "pending" and meta["attempts"] == 2
    assert "error" not in meta and "wandb_id" not in meta and "unreadable" in meta["restarted"]
    assert not run.metrics_path.exists() and not run.checkpoint_dir.exists()


def test_a_float64_run_resumes_without_rounding_its_weights(tmp_path):
    """Lightning restores a checkpoint into the module before 64-true precision converts it: a
    module built in float32 would round the restored float64 weights. eos_quadratic runs in
    float64 and logs its top NTK mode every step, whose previous mode travels in the checkpoint."""
    def eos_quadratic(root):
        config = load_experiment("eos_quadratic", "quick", [
            "optim.lr=4.0", "model.curvature=0.35", "trainer.max_steps=1500",
            "trainer.checkpoint_every=100", "trainer.eval_every=500", "measure.hessian.every=50",
            "logging.wandb=false"])
        return prepare_sweep(config, [single(config)], root)[0]

    reference, killed = eos_quadratic(tmp_path / "ref"), eos_quadratic(tmp_path / "kill")
    assert execute(RunDir(reference), echo=lambda *_: None).status == "completed"
    kill_after_first_checkpoint(killed)
    assert execute(RunDir(killed), resume=True, echo=lambda *_: None).status == "completed"
    assert RunDir(killed).meta["resumed_at_steps"][0] >= 100
    expected, got = pd.read_csv(reference / "metrics.csv"), pd.read_csv(killed / "metrics.csv")
    assert "second_order/ntk_lambda_prev_mode" in got
    pd.testing.assert_frame_equal(expected, got, check_exact=True)
