"""Loading a checkpoint never runs code, and nothing in the run dir changes before it loaded;
a metrics.csv that does not parse is named (file and line) and left as it is."""

import os
import pickle

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dynamics_lab.cli import app
from dynamics_lab.config import load_experiment
from dynamics_lab.sweep import prepare_sweep, single
from dynamics_lab.tracking.checkpoint import CheckpointError, load_checkpoint
from dynamics_lab.tracking.metrics import MetricsFile
from dynamics_lab.tracking.rundir import RunDir, Status
from dynamics_lab.train.runner import execute
from dynamics_lab.train.worker import run_one


class Payload:
    """Unpickling this runs a shell command: what a crafted checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def snapshot(path):
    return {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}


@pytest.fixture
def killed_run(tmp_path, tiny_overrides):
    """A run killed at step 20 with rows logged up to step 30 (dropped on a sound resume)."""
    config = load_experiment("grokking", "quick", tiny_overrides + ["logging.wandb=false"])
    run = RunDir(prepare_sweep(config, [single(config)], tmp_path / "s")[0])
    metrics = MetricsFile(run.metrics_path)
    for step in range(0, 40, 10):
        metrics.log({"train/loss": 1.0 / (step + 1)}, step=step)
    run.checkpoint_dir.mkdir()
    run.update_meta(status=Status.KILLED)
    return run


def test_the_payload_would_run_if_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists(), "the crafted pickle must be live for the tests below to mean anything"


def test_resume_refuses_a_checkpoint_that_holds_code(killed_run, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"global_step": 20, "state_dict": {}, "callbacks": Payload(marker)},
               killed_run.last_checkpoint)
    before = snapshot(killed_run.path)
    result = invoke("resume", killed_run.path)
    assert result.exit_code == 2
    assert "unreadable" in result.output and "refusing to unpickle code" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not marker.exists()
    assert snapshot(killed_run.path) == before  # metrics.csv and meta.json untouched


def test_a_sweep_retry_starts_over_rather_than_load_it(killed_run, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"global_step": 20, "loops": Payload(marker)}, killed_run.last_checkpoint)
    assert run_one(killed_run.path, echo=lambda *_: None) == Status.COMPLETED
    assert not marker.exists() and killed_run.meta["attempts"] == 2


def test_lightnings_own_load_is_weights_only(killed_run, tmp_path, monkeypatch):
    # Were the file swapped after our check, Lightning's load must refuse it too.
    marker = tmp_path / "pwned"
    torch.save({"global_step": 20, "optimizer_states": [Payload(marker)]},
               killed_run.last_checkpoint)
    monkeypatch.setattr("dynamics_lab.tracking.resume.checked_step", lambda *args: 20)
    result = execute(killed_run, resume=True, echo=lambda *_: None)
    assert result.status == Status.FAILED and "Weights only load failed" in result.error
    assert not marker.exists()


def test_what_our_checkpoints_hold_loads_under_the_allow_list(tmp_path):
    import random

    state = {"global_step": 7, "numpy_rng": np.random.get_state(), "python_rng": random.getstate(),
             "scalars": [np.float64(0.5), np.int64(3)], "tensor": torch.arange(3)}
    torch.save(state, tmp_path / "ok.ckpt")
    loaded = load_checkpoint(tmp_path / "ok.ckpt")
    assert np.array_equal(loaded["numpy_rng"][1], state["numpy_rng"][1])
    assert loaded["python_rng"] == state["python_rng"] and loaded["scalars"][1] == 3
    with pytest.raises(CheckpointError, match="no global_step"):
        torch.save({"state_dict": {}}, tmp_path / "bare.ckpt")
        load_checkpoint(tmp_path / "bare.ckpt")


@pytest.mark.parametrize("bad_row, message", [
    ("40,0.5,extra\n", ":6: 3 fields where the header has 2"),
    ("40,oops\n", ":6: train/loss='oops' is not a number"),
])
def test_a_corrupt_metrics_file_is_named_and_never_rewritten(killed_run, bad_row, message):
    torch.save({"global_step": 20}, killed_run.last_checkpoint)
    with open(killed_run.metrics_path, "a") as f:
        f.write(bad_row)
    before = snapshot(killed_run.path)
    for command in ("resume", "show"):
        result = invoke(command, killed_run.path)
        assert result.exit_code == 2, result.output
        assert f"{killed_run.metrics_path}{message}" in result.output
        assert len(result.output.strip().splitlines()) == 1
    assert snapshot(killed_run.path) == before
