"""Progress while training: the live line of one run (terminal and log file), its progress.json,
what a sweep reads of its running runs, `dynlab show` on a running run; and metrics.parquet
written when a run ends, whatever the ending."""

import io
import json
from types import SimpleNamespace

import pandas as pd
import pytest
from typer.testing import CliRunner

import dynamics_lab.tracking.progress_line as progress_module
from dynamics_lab.cli import app
from dynamics_lab.sweep.progress import SweepProgress
from dynamics_lab.tracking.progress import ProgressLine, eta_s, format_duration, read_progress
from dynamics_lab.tracking.rundir import RunDir, Status, write_json


class Clock:
    """A stand-in for the `time` module that counts how often the clock is read."""

    def __init__(self):
        self.now, self.reads = 1000.0, 0

    def monotonic(self):
        self.reads += 1
        return self.now

    def time(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def train(callback, max_steps, step_s, clock, metrics=None, start=0):
    """Drive the callback's hooks as a Trainer does: one batch end per optimizer step.

    A stand-in trainer, so the clock can advance by `step_s` at every step; the real Trainer's
    path (fused blocks, one batch end per block) is test_a_real_fused_run_reports_each_block."""
    # A stand-in: the clock advances per step, up to 100 000 steps (half a minute in a Trainer).
    trainer = SimpleNamespace(max_steps=max_steps, global_step=start, callback_metrics={},
                              loggers=[SimpleNamespace(latest=metrics or {})])
    callback.on_train_start(trainer, None)
    for step in range(start + 1, max_steps + 1):
        clock.now += step_s
        trainer.global_step = step
        callback.on_train_batch_end(trainer, None, None, None, step)
    callback.on_train_end(trainer, None)


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_module, "time", clock)
    return clock


def test_off_a_terminal_a_plain_line_every_tenth_after_a_quiet_start(clock, tmp_path):
    out = io.StringIO()
    metrics = {"train/loss": 0.5, "val/acc": 0.25, "hessian/lambda_max": 3.0}
    train(ProgressLine(tmp_path, stream=out), 100, 0.125, clock, metrics)
    lines = out.getvalue().splitlines()
    # Nothing in the first 2 s (step 16), then at every tenth of the run, the last one once.
    assert [int(line.split()[1].split("/")[0]) for line in lines] == [16, *range(20, 101, 10)]
    assert lines[4] == "step  50/100 ( 50%)  train/loss=0.5  val/acc=0.25  6s elapsed, eta 6s"
    progress = json.loads((tmp_path / "progress.json").read_text())
    assert progress == {"step": 100, "max_steps": 100, "eta_s": 0.0, "time": clock.now,
                        "metrics": {"train/loss": 0.5, "val/acc": 0.25}}


def test_a_short_run_off_a_terminal_prints_nothing(clock):
    out = io.StringIO()
    train(ProgressLine(stream=out), 100, 0.01, clock)
    assert out.getvalue() == ""


def test_a_long_silence_off_a_terminal_still_prints_every_30_s(clock):
    out = io.StringIO()
    train(ProgressLine(stream=out, plain_fraction=1.0), 20, 10.0, clock)  # 10 s per step
    steps = [int(line.split()[1].split("/")[0]) for line in out.getvalue().splitlines()]
    assert steps == [1, 4, 7, 10, 13, 16, 19, 20]


def test_on_a_terminal_one_line_is_redrawn_in_place(clock):
    out = Terminal()
    train(ProgressLine(stream=out), 100, 0.125, clock, {"train/batch_loss": 1.0})
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\x1b[K\n")
    frames = text.rstrip("\n").split("\r")[1:]
    assert len(frames) == 100 * 0.125 / 0.5 + 1  # every 0.5 s, and the final state
    assert frames[-1].startswith("step 100/100 (100%)  train/batch_loss=1  ")


def test_the_clock_is_read_a_few_times_a_second_not_every_step(clock):
    train(ProgressLine(stream=io.StringIO()), 100_000, 0.001, clock)  # 1000 steps/s for 100 s
    assert clock.reads < 0.006 * 100_000  # ~4 looks a second, at least one per 0.5% of the run


def test_eta_counts_only_the_steps_of_this_attempt():
    assert eta_s(50, 100, start_step=40, elapsed_s=5.0) == 25.0
    assert eta_s(40, 100, start_step=40, elapsed_s=5.0) is None
    assert [format_duration(s) for s in (None, 42.4, 185, 7620)] == ["?", "42s", "3m05s", "2h07m"]


def prepared_run(path, max_steps=100, status=Status.RUNNING):
    run = RunDir.create(path, {"name": "x", "trainer": {"max_steps": max_steps}}, seed=0)
    run.update_meta(status=status, started="2026-01-01T00:00:00+00:00")
    return run


def test_read_progress_prefers_the_progress_file_then_the_last_metrics_row(tmp_path):
    run = prepared_run(tmp_path / "run")
    assert read_progress(run.path, 100) == (0, 100)
    run.metrics_path.write_text("step,train/loss\n0,1.0\n10,0.5\n20,0.25\n3")  # torn last line
    assert read_progress(run.path, 100) == (20, 100)
    write_json(run.progress_path, {"step": 35, "max_steps": 120})
    assert read_progress(run.path, 100) == (35, 120)


def test_sweep_progress_counts_steps_of_running_and_ended_runs(tmp_path):
    a, b = prepared_run(tmp_path / "a"), prepared_run(tmp_path / "b", max_steps=300)
    sweep = SweepProgress([[a.path], [b.path]], workers=1)
    sweep.started([a.path])
    write_json(a.progress_path, {"step": 30, "max_steps": 100})
    sweep._refresh()
    tasks = {t.description.strip(): t for t in sweep.progress.tasks}
    assert tasks["a"].completed == 30 and tasks["a"].total == 100
    assert tasks["sweep: 0/2 runs (1 worker(s))"].completed == 30
    assert tasks["sweep: 0/2 runs (1 worker(s))"].total == 400
    sweep.done(a.path, Status.COMPLETED)
    sweep.started([b.path])
    b.metrics_path.write_text("step,train/loss\n0,1.0\n50,0.5\n")  # no progress.json: the CSV
    sweep._refresh()
    tasks = {t.description.strip(): t for t in sweep.progress.tasks}
    assert "a" not in tasks and tasks["b"].completed == 50
    assert tasks["sweep: 1/2 runs (1 worker(s))"].completed == 100 + 50


def test_a_sweep_piped_to_a_file_prints_plain_unwrapped_lines(tmp_path, capsys):
    name = "lr=0.001__weight_decay=1.0__train_fraction=0.45__seed=123456789__" + "x" * 60
    run = prepared_run(tmp_path / name)
    with SweepProgress([[run.path]], workers=1) as sweep:  # stdout is no terminal here (Slurm)
        sweep.started([run.path])
        sweep.done(run.path, Status.COMPLETED)
        sweep.heartbeat(sweep.t0 + 31)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out
    lines = out.splitlines()
    assert any(line == f"  {name}: completed  " for line in lines), lines  # one line, > 80 cols
    assert any(line.startswith("sweep: 1/1 runs done, 0 running, 100/100 steps") for line in lines)


def test_a_real_fused_run_reports_each_block_and_its_end(tmp_path):
    import lightning as L
    import torch
    from test_lightning_internals import Tiny, endless_data

    out, run = io.StringIO(), prepared_run(tmp_path / "run", max_steps=600)
    line = ProgressLine(run.path, stream=out, quiet_s=0.0)
    trainer = L.Trainer(max_steps=600, max_epochs=-1, logger=False, callbacks=[line],
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, accelerator="cpu")
    torch.manual_seed(0)
    trainer.fit(Tiny(), datamodule=endless_data())
    # Fused steps (up to 256 a Lightning step) call the line once a block, and at the end.
    steps = [int(x.split("/")[0].split()[-1]) for x in out.getvalue().splitlines()]
    assert steps == [256, 512, 600]
    assert read_progress(run.path) == (600, 600)


def test_show_on_a_running_run_gives_its_step_and_eta(tmp_path):
    run = prepared_run(tmp_path / "run")
    write_json(run.progress_path, {"step": 30, "max_steps": 100, "eta_s": 60.0})
    result = CliRunner().invoke(app, ["show", str(run.path)])
    assert result.exit_code == 0, result.output
    assert ", step 30/100, eta 1m00s" in result.output.splitlines()[0]


METRICS = "step,train/loss,val/acc\n0,1.0,0.1\n10,0.5,\n10,0.5,0.3\n20,0.25,"


@pytest.mark.parametrize("status", [Status.COMPLETED, Status.DIVERGED, Status.FAILED,
                                    Status.KILLED])
def test_every_ending_with_metrics_writes_metrics_parquet(tmp_path, status):
    run = prepared_run(tmp_path / "run")
    run.metrics_path.write_text(METRICS)  # a merged row appended again, a torn last line
    run.finish(status)
    expected = pd.DataFrame({"step": [0, 10], "train/loss": [1.0, 0.5], "val/acc": [0.1, 0.3]})
    pd.testing.assert_frame_equal(pd.read_parquet(run.parquet_path), expected)
    assert sorted(p.name for p in run.path.iterdir() if "parquet" in p.name) == \
        ["metrics.parquet"]


def test_a_metrics_file_that_does_not_parse_leaves_no_parquet(tmp_path):
    run = prepared_run(tmp_path / "run")
    run.parquet_path.write_text("stale")
    run.metrics_path.write_text("step,train/loss\n0,abc\n")
    assert run.finish(Status.FAILED)["status"] == Status.FAILED
    assert not run.parquet_path.exists()


def test_a_new_attempt_drops_the_last_attempts_parquet_and_progress(tmp_path):
    run = prepared_run(tmp_path / "run")
    run.metrics_path.write_text(METRICS)
    run.finish(Status.KILLED)
    write_json(run.progress_path, {"step": 10, "max_steps": 100})
    run.start("cpu")
    assert not run.parquet_path.exists() and not run.progress_path.exists()
    run.finish(Status.KILLED)
    run.reset()
    assert not run.parquet_path.exists() and not run.metrics_path.exists()
