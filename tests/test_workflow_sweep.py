"""A researcher's loop on one two-worker sweep with W&B offline: the sync hint once, every verdict
key in every run's W&B summary, metrics.parquet and progress.json per run, the report logged to
W&B (table and figures) and the dashboard spec written with its panels listed."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import wandb
from conftest import TINY_GROKKING
from typer.testing import CliRunner
from wandb.proto import wandb_internal_pb2 as pb

from dynamics_lab.cli import app
from dynamics_lab.phenomena.columns import published
from dynamics_lab.report.tables import sweep_table
from dynamics_lab.tracking.metrics import read_metrics
from dynamics_lab.tracking.wandb import finish_wandb, verdict_summary

GROKKING_VERDICT = ["phenomenon", "outcome", "detected", "reason", "summary", "fit_step",
                    "generalization_step", "delay_ratio", "delay_evals", "val_acc_at_fit",
                    "held_fraction", "final_train_acc", "final_val_acc", "max_val_acc"]


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline W&B run file (32 KiB blocks of CRC/length/type-framed
    chunks after a 7-byte header)."""
    data, pos, block, buf, records = path.read_bytes(), 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer too short for a header: padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(buf)
            records.append(record)
            buf = b""
    return records


def final_summary(run_file: Path) -> dict:
    """The last value of every summary key, decoded."""
    summary = {}
    for record in wandb_records(run_file):
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return summary


def the_run(records) -> pb.RunRecord:
    return next(r.run for r in records if r.WhichOneof("record_type") == "run")


@pytest.fixture(scope="module")
def offline_sweep(tmp_path_factory):
    """One tiny two-run sweep trained by two workers with W&B on and no login."""
    root = tmp_path_factory.mktemp("workflow")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.delenv("WANDB_API_KEY", raising=False)
        mp.setenv("HOME", str(root / "home"))  # no ~/.netrc login
        mp.setenv("DYNLAB_RUNS", str(root / "runs"))
        args = ["run", "grokking", "--sweep", "--workers", "2", "--wandb"]
        for o in [*TINY_GROKKING, "sweep.grid={}", "sweep.seeds=[0, 1]"]:
            args += ["--set", o]
        result = CliRunner().invoke(app, args)
        sweep_dir = next((root / "runs" / "grokking").iterdir())
        yield root, sweep_dir, result, mp


def test_sweep_prints_the_offline_sync_hint_once(offline_sweep):
    _, sweep_dir, result, _ = offline_sweep
    assert result.exit_code == 0, result.output
    hints = [line for line in result.output.splitlines() if "wandb sync" in line]
    assert hints == [f"W&B ran offline (no login); upload with: wandb sync "
                     f"{sweep_dir}/*/wandb/offline-run-*"]
    assert "steps" in result.output  # the sweep's progress line (steps done of all, ETA)


def test_every_run_summary_carries_every_verdict_key(offline_sweep):
    _, sweep_dir, _, _ = offline_sweep
    run_files = sorted(sweep_dir.glob("*/wandb/offline-run-*/*.wandb"))
    assert len(run_files) == 2
    for run_file in run_files:
        run_dir = run_file.parents[2]
        verdict = json.loads((run_dir / "verdict.json").read_text())
        summary = final_summary(run_file)
        assert sorted(k for k in summary if k.startswith("verdict/")) == sorted(
            f"verdict/{k}" for k in GROKKING_VERDICT)
        # 40 steps cannot show grokking: the key metric is null in the verdict, yet present.
        assert verdict["delay_ratio"] is None and "verdict/delay_ratio" in summary
        for key in GROKKING_VERDICT:
            assert summary[f"verdict/{key}"] == verdict[key], key  # NaN travels as null
        assert summary["status"] == "completed"
        assert the_run(wandb_records(run_file)).run_group == sweep_dir.name


def test_runs_end_with_a_parquet_copy_of_their_metrics_and_a_progress_file(offline_sweep):
    _, sweep_dir, _, _ = offline_sweep
    for run_dir in sorted(p.parent for p in sweep_dir.glob("*/meta.json")):
        expected = read_metrics(run_dir / "metrics.csv")
        pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "metrics.parquet"), expected)
        assert not list(run_dir.glob(".metrics.parquet*"))  # no temporary file left
        progress = json.loads((run_dir / "progress.json").read_text())
        assert (progress["step"], progress["max_steps"]) == (40, 40)
        assert progress["metrics"]["val/acc"] == expected["val/acc"].dropna().iloc[-1]


def test_report_logs_the_summary_table_and_figures_as_one_report_run(offline_sweep, tmp_path):
    _, sweep_dir, _, _ = offline_sweep
    result = CliRunner().invoke(app, ["report", "grokking", "--runs", str(sweep_dir),
                                      "--out", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output  # W&B on: the sweep ran with --wandb
    assert f"wandb sync {sweep_dir}/wandb/offline-run-*" in result.output
    wandb.teardown()  # the W&B service writes the run file on its own time; a CLI exits here
    (report_run,) = sweep_dir.glob("wandb/offline-run-*")
    run = the_run(wandb_records(next(report_run.glob("*.wandb"))))
    assert (run.run_group, run.job_type) == (sweep_dir.name, "report")

    (table_file,) = report_run.glob("files/media/table/summary_*.table.json")
    table = json.loads(table_file.read_text())
    summary = pd.read_csv(tmp_path / "results" / "summary.csv")
    runs = sweep_table(sweep_dir)  # W&B spells verdict fields as its run summaries do
    assert table["columns"] == list(runs.columns) and "verdict/delay_ratio" in runs
    assert list(published(runs).columns) == list(summary.columns)  # results/: bare
    assert [row[table["columns"].index("run_id")] for row in table["data"]] == \
        list(summary["run_id"])
    figures = sorted(p.stem for p in (tmp_path / "results").glob("*.png"))
    assert figures
    logged = sorted(p.name for p in report_run.glob("files/media/images/figures/*.png"))
    assert len(logged) == len(figures)
    assert all(any(name.startswith(f + "_") for name in logged) for f in figures)


def test_report_without_wandb_logs_nothing(offline_sweep, tmp_path):
    _, sweep_dir, _, _ = offline_sweep
    before = set(sweep_dir.glob("wandb/offline-run-*"))
    result = CliRunner().invoke(app, ["report", "grokking", "--runs", str(sweep_dir), "--out",
                                      str(tmp_path), "--no-wandb"])
    assert result.exit_code == 0 and "wandb sync" not in result.output
    assert set(sweep_dir.glob("wandb/offline-run-*")) == before


def test_dashboard_offline_writes_the_spec_lists_panels_and_says_how_to_publish(offline_sweep):
    root, sweep_dir, _, _ = offline_sweep  # no login: not published
    result = CliRunner().invoke(app, ["dashboard", "grokking"])  # newest sweep under runs/
    assert result.exit_code == 0, result.output
    spec = json.loads((sweep_dir / "dashboard.json").read_text())
    assert spec["group"] == sweep_dir.name and spec["panels"]
    logged = set(pd.read_csv(next(sweep_dir.glob("*/metrics.csv"))).columns)
    for panel in spec["panels"]:
        assert f"{panel['title']}: {', '.join(panel['y'])}" in result.output
        if panel["kind"] == "line":
            assert set(panel["y"]) <= logged  # only curves the runs logged
    assert f"dynlab dashboard grokking --runs {sweep_dir} --publish" in result.output
    assert "wandb login" in result.output


def test_dashboard_of_a_directory_without_sweeps_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["dashboard", "grokking", "--runs", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a sweep directory" in result.output and len(result.output.splitlines()) == 1


class FakeRun:
    def __init__(self, config):
        self.config, self.summary, self.exit_code = config, {}, None

    def finish(self, exit_code):
        self.exit_code = exit_code


@pytest.mark.parametrize("verdict", [None, {"outcome": "not_detected", "detected": False,
                                            "delay_ratio": None, "fit_step": 400}])
def test_a_failed_or_negative_run_still_reports_every_verdict_key(verdict):
    run = FakeRun({"phenomenon": {"name": "grokking"}})
    finish_wandb(type("Logger", (), {"experiment": run})(), verdict, "failed")
    keys = {k[len("verdict/"):] for k in run.summary if k.startswith("verdict/")}
    assert keys == set(GROKKING_VERDICT)
    assert math.isnan(run.summary["verdict/delay_ratio"])
    assert run.summary["verdict/phenomenon"] == "grokking" and run.exit_code == 1
    if verdict:
        assert run.summary["verdict/fit_step"] == 400 and run.summary["verdict/detected"] is False


def test_without_a_phenomenon_the_summary_holds_only_the_verdict_given():
    assert verdict_summary({}) == {}
    assert verdict_summary({}, {"x": None}) == {"verdict/x": pytest.approx(math.nan,
                                                                           nan_ok=True)}
