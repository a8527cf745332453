"""Reports per sweep (a second sweep's report never replaces the first), the compact end table of
a sweep, and log-friendly sweep progress off a terminal: heartbeat lines, no hard wraps."""

import io
import json

from rich.console import Console
from test_analysis_tables import fake_sweep
from typer.testing import CliRunner

from dynamics_lab.cli import app
from dynamics_lab.report.layout import LATEST
from dynamics_lab.report.summary import summarize_sweep
from dynamics_lab.sweep import progress as sweep_progress
from dynamics_lab.sweep.progress import SweepProgress
from dynamics_lab.tracking.rundir import RunDir, Status, write_json

OLD, NEW = "20260101-000000-aaaa", "20260102-000000-bbbb"


def report(sweep):
    result = CliRunner().invoke(app, ["report", "grokking", "--runs", str(sweep), "--no-wandb"])
    assert result.exit_code == 0, result.output
    return result.output


def test_each_sweep_reports_into_its_own_folder_and_the_newest_is_copied_on_top(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    old = fake_sweep(tmp_path / "runs", OLD, [0.0, 1.0], delays=[None, 4.0])
    new = fake_sweep(tmp_path / "runs", NEW, [0.0, 1.0], seeds=(0,), delays=[2.0, 3.0])
    results = tmp_path / "results" / "grokking"
    report(old)
    assert (results / OLD / "summary.csv").is_file() and (results / OLD / "cells.csv").is_file()
    assert json.loads((results / LATEST).read_text())["sweep_id"] == OLD
    assert (results / "summary.csv").read_text() == (results / OLD / "summary.csv").read_text()
    report(new)
    assert (results / OLD / "summary.csv").is_file()  # the first sweep's report is kept
    assert json.loads((results / LATEST).read_text())["sweep_id"] == NEW
    assert (results / "summary.csv").read_text() == (results / NEW / "summary.csv").read_text()
    (results / OLD / "summary.csv").unlink()
    report(old)  # reporting an older sweep again leaves the newest on top
    assert (results / OLD / "summary.csv").is_file()
    assert json.loads((results / LATEST).read_text())["sweep_id"] == NEW
    out = tmp_path / "elsewhere"
    result = CliRunner().invoke(app, ["report", "grokking", "--runs", str(old), "--out", str(out),
                                      "--no-wandb"])
    assert result.exit_code == 0 and (out / "summary.csv").is_file()
    assert not (out / OLD).exists()  # --out is the folder itself


def test_the_end_table_is_swept_keys_seed_status_outcome_and_the_key_number(tmp_path):
    sweep = fake_sweep(tmp_path, OLD, [0.0, 1.0], delays=[None, 4.0])
    text, failures = summarize_sweep(sweep, {}, set())
    table = text.strip().splitlines()
    assert table[0].split() == ["weight_decay", "seed", "status", "outcome", "delay_ratio"]
    assert table[1].split() == ["0", "0", "completed", "not", "detected", "-"]
    assert table[4].split() == ["1", "1", "completed", "detected", "5"]
    assert max(len(line) for line in table[:5]) < 60 and failures == []


def prepared_run(path, max_steps):
    run = RunDir.create(path, {"name": "x", "trainer": {"max_steps": max_steps}}, seed=0)
    run.update_meta(status=Status.RUNNING)
    return run


def test_off_a_terminal_a_sweep_prints_a_heartbeat_every_tenth_or_30_seconds(tmp_path):
    a, b = prepared_run(tmp_path / "a", 100), prepared_run(tmp_path / ("b" * 120), 300)
    out = io.StringIO()
    sweep = SweepProgress([[a.path], [b.path]], workers=1, console=Console(file=out))
    assert not sweep.live
    t0 = sweep.t0
    sweep.started([a.path])
    write_json(a.progress_path, {"step": 20, "max_steps": 100})
    sweep._refresh()
    assert sweep.heartbeat(t0 + 5) is None  # 5% of the steps, 5 s in
    write_json(a.progress_path, {"step": 40, "max_steps": 100})
    sweep._refresh()
    line = sweep.heartbeat(t0 + 10)  # 10%: a line
    assert line == ("sweep: 0/2 runs done, 1 running, 40/400 steps (10%), 10s elapsed, "
                    "eta 1m30s")
    assert sweep.heartbeat(t0 + 20) is None
    assert sweep.heartbeat(t0 + 40.5) is not None  # 30 s since the last line
    sweep.done(a.path, Status.COMPLETED)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[:2] == [line, lines[1]]
    assert lines[2].startswith("  a: completed")
    sweep.started([b.path])
    sweep.done(b.path, Status.COMPLETED)  # a run id far wider than 80 columns: one line
    assert out.getvalue().splitlines()[-1].startswith("  " + "b" * 120 + ": completed")
    assert sweep_progress.HEARTBEAT_S == 30.0
