"""Faults and bad input: a failing measurement, a full disk, foreign or corrupted directories,
concurrent sweeps sharing one runs/ tree."""

import errno
import json
import threading
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dynamics_lab.cli import app
from dynamics_lab.config import load_experiment
from dynamics_lab.measure.base import Measurement
from dynamics_lab.registry import MODELS, TASKS
from dynamics_lab.sweep import expand, prepare_sweep
from dynamics_lab.tracking.metrics import LocalMetricsLogger
from dynamics_lab.tracking.rundir import RunDir, RunDirError, new_sweep_id
from dynamics_lab.train.module import DynamicsModule
from dynamics_lab.train.runner import build_trainer


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


class Broken(Measurement):
    prefix = "broken"

    def measure(self, trainer, pl_module, model):
        raise RuntimeError("no convergence")


@pytest.mark.filterwarnings("ignore:.*LeafSpec")
def test_a_failing_measurement_is_logged_and_training_goes_on(tmp_path, tiny_overrides):
    config = load_experiment("grokking", "quick", tiny_overrides)
    run = RunDir.create(tmp_path / "run", config.to_dict(), config.seed)
    task = TASKS.get(config.task.name)(config.task, seed=config.seed)
    task.setup()
    model = MODELS.get(config.model.name)(config.model, task.spec)
    module = DynamicsModule(model, task.spec.loss, config.optim, config.trainer.log_every)
    trainer = build_trainer(config, run, "cpu", [LocalMetricsLogger(run.path)], [Broken(every=20)])
    with pytest.warns(UserWarning, match="Broken failed"):
        trainer.fit(module, datamodule=task)
    metrics = pd.read_csv(run.metrics_path)
    assert metrics.dropna(subset=["broken/failed"])["step"].tolist() == [0, 20, 40]
    assert metrics["step"].tolist() == [0, 10, 20, 30, 40] and metrics["val/acc"].notna().all()


def test_a_full_disk_is_a_clear_error(runs_root, monkeypatch):
    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", no_space)
    result = invoke("run", "grokking")
    assert result.exit_code == 2
    assert "cannot write runs" in result.output and "No space left on device" in result.output
    assert not any(runs_root.rglob("meta.json"))


def snapshot(root):
    return {p: p.read_bytes() for p in Path(root).rglob("*") if p.is_file()}


@pytest.fixture
def odd_dirs(tmp_path, tiny_overrides):
    """A foreign directory, a run with corrupted meta.json, a finished run, a sweep with a
    corrupted manifest, a run with a corrupted checkpoint."""
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("my thesis")
    config = load_experiment("grokking", "quick", tiny_overrides)
    corrupted = RunDir.create(tmp_path / "corrupted", config.to_dict(), 0)
    corrupted.meta_path.write_text('{"status": "runn')
    finished = RunDir.create(tmp_path / "finished", config.to_dict(), 0)
    finished.update_meta(status="completed")
    bad_ckpt = RunDir.create(tmp_path / "bad_ckpt", config.to_dict(), 0)
    bad_ckpt.update_meta(status="killed")
    bad_ckpt.checkpoint_dir.mkdir()
    bad_ckpt.last_checkpoint.write_bytes(b"\x00garbage")
    bad_sweep = tmp_path / "bad_sweep"
    bad_sweep.mkdir()
    (bad_sweep / "sweep.json").write_text("[1, 2")
    return {"foreign": foreign, "corrupted": corrupted.path, "finished": finished.path,
            "bad_ckpt": bad_ckpt.path, "bad_sweep": bad_sweep}


@pytest.mark.parametrize("command, target, message", [
    (["resume"], "foreign", "not a dynamics_lab run"),
    (["resume"], "corrupted", "corrupted"),
    (["resume"], "finished", "already ended"),
    (["resume"], "bad_ckpt", "unreadable"),
    (["show"], "foreign", "not a dynamics_lab run"),
    (["show"], "corrupted", "corrupted"),
    (["report", "grokking", "--runs"], "foreign", "no sweep found"),
    (["report", "grokking", "--runs"], "bad_sweep", "corrupted"),
    (["run", "grokking", "--sweep", "--resume-sweep"], "foreign", "not a sweep directory"),
    (["run", "grokking", "--sweep", "--resume-sweep"], "bad_sweep", "corrupted"),
])
def test_foreign_or_corrupted_dirs_are_clear_errors_and_stay_untouched(
        odd_dirs, tmp_path, command, target, message):
    before = snapshot(tmp_path)
    extra = ["--out", tmp_path / "results"] if command[0] == "report" else []
    result = invoke(*command, odd_dirs[target], *extra)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert snapshot(tmp_path) == before


def test_concurrent_sweeps_never_clobber_each_other(tmp_path, tiny_overrides):
    config = load_experiment("grokking", "quick", tiny_overrides + [
        "sweep.grid={optim.weight_decay: [0.0, 1.0]}", "sweep.seeds=[0, 1]"])
    specs = expand(config)
    root = tmp_path / "runs" / "grokking"
    barrier, outcomes = threading.Barrier(4), []

    def prepare(sweep_dir):
        barrier.wait()
        try:
            outcomes.append(("ok", prepare_sweep(config, specs, sweep_dir)))
        except RunDirError as exc:
            outcomes.append(("error", str(exc)))

    shared = root / "same"
    targets = [root / new_sweep_id(), root / new_sweep_id(), shared, shared]
    threads = [threading.Thread(target=prepare, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kinds = sorted(kind for kind, _ in outcomes)
    assert kinds == ["error", "ok", "ok", "ok"]
    assert "already exists" in next(v for k, v in outcomes if k == "error")
    for sweep_dir in {targets[0], targets[1], shared}:
        manifest = json.loads((sweep_dir / "sweep.json").read_text())
        assert len(manifest["runs"]) == 4
        for entry in manifest["runs"]:
            meta = json.loads((sweep_dir / entry["run_id"] / "meta.json").read_text())
            assert meta["status"] == "pending"
