"""Run directories and the crash-safe metrics file."""

import json

import pytest

from dynamics_lab.tracking.metrics import MetricsError, MetricsFile, read_metrics
from dynamics_lab.tracking.rundir import RunDir, RunDirError


def test_rows_merge_by_step_and_are_on_disk_at_once(tmp_path):
    f = MetricsFile(tmp_path / "metrics.csv")
    f.log({"a": 1.0}, step=0)
    f.log({"b": 2.0}, step=0)
    f.log({"a": 3.0}, step=10)
    # No close/flush call: a killed process leaves exactly this on disk.
    frame = read_metrics(tmp_path / "metrics.csv")
    assert frame["step"].tolist() == [0, 10]
    assert frame.loc[0, "a"] == 1.0 and frame.loc[0, "b"] == 2.0
    assert frame.loc[1, "a"] == 3.0 and frame["b"].isna().iloc[1]
    f.log({"c": 4.0}, step=10)  # a new column rewrites the file
    f.log({"a": 5.0}, step=20)
    frame = read_metrics(tmp_path / "metrics.csv")
    assert list(frame.columns) == ["step", "a", "b", "c"]
    assert frame["c"].tolist()[1] == 4.0 and frame["a"].tolist() == [1.0, 3.0, 5.0]


def test_reopen_appends_and_truncate_drops_later_rows(tmp_path):
    path = tmp_path / "metrics.csv"
    f = MetricsFile(path)
    for step in range(0, 50, 10):
        f.log({"a": float(step)}, step=step)
    again = MetricsFile(path)
    again.truncate_after(20)
    again.log({"a": -1.0}, step=30)
    assert read_metrics(path)["step"].tolist() == [0, 10, 20, 30]
    assert read_metrics(path)["a"].tolist()[-1] == -1.0


def test_run_dir_lifecycle(tmp_path):
    run = RunDir.create(tmp_path / "r", {"name": "x"}, seed=3)
    assert run.meta["status"] == "pending"
    run.start("cpu")
    assert run.meta["status"] == "running" and run.meta["versions"]["torch"]
    meta = run.finish("completed")
    assert meta["status"] == "completed" and meta["wall_time_s"] >= 0
    assert "_t0" not in json.loads(run.meta_path.read_text())
    assert RunDir.open(run.path).config() == {"name": "x"}


def test_foreign_and_corrupted_dirs_are_clear_errors(tmp_path):
    (tmp_path / "foreign").mkdir()
    with pytest.raises(RunDirError, match="not a dynamics_lab run"):
        RunDir.open(tmp_path / "foreign")
    run = RunDir.create(tmp_path / "r", {"name": "x"}, seed=0)
    run.meta_path.write_text("{not json")
    with pytest.raises(RunDirError, match="corrupted"):
        RunDir.open(run.path)
    with pytest.raises(RunDirError, match="not a directory"):
        RunDir.open(tmp_path / "missing")


def test_a_torn_last_line_is_dropped_and_compact_leaves_one_row_per_step(tmp_path):
    path = tmp_path / "metrics.csv"
    f = MetricsFile(path)
    f.log({"a": 1.0, "b": 1.0}, step=0)
    f.log({"a": 2.0}, step=10)
    f.log({"b": 3.0}, step=10)  # merged row appended again, nothing rewritten in place
    with open(path, "a") as handle:
        handle.write("20,9.")  # a writer killed mid-line
    frame = read_metrics(path)
    assert frame["step"].tolist() == [0, 10]
    assert frame.loc[1, "a"] == 2.0 and frame.loc[1, "b"] == 3.0
    MetricsFile(path).compact()
    assert path.read_text().count("\n") == 3  # header + one row per step


def test_a_metrics_file_that_does_not_parse_names_its_line(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,a,b\n0,1.0,2.0\n10,3.0\n20,4.0,5.0\n")  # line 3 lost a field
    with pytest.raises(MetricsError, match=r"metrics.csv:3: 2 fields where the header has 3"):
        read_metrics(path)
    with pytest.raises(MetricsError):
        MetricsFile(path)  # reopening (as a resumed run does) must not rewrite it
    assert path.read_text() == "step,a,b\n0,1.0,2.0\n10,3.0\n20,4.0,5.0\n"
    path.write_text("step,a\n")
    assert read_metrics(path).empty  # a run that has not logged yet
