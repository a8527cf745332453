"""`dynlab list` and `dynlab show` answer without loading torch, Lightning or pandas: the names
are read from the built-ins' source, the last metrics from the CSV row by row."""

import resource
import subprocess
import sys

import pytest

from dynamics_lab import catalog
from dynamics_lab.registry import MEASUREMENTS, MODELS, PHENOMENA, TASKS
from dynamics_lab.tracking.metrics import (
    MetricsError,
    last_metrics,
    last_run_metrics,
    read_metrics,
)
from dynamics_lab.tracking.rundir import RunDir

HEAVY = ("torch", "lightning", "pandas", "matplotlib", "wandb")


def modules_loaded_by(*args: str) -> tuple[str, list[str]]:
    code = ("import sys\n"
            f"sys.argv = ['dynlab', *{list(args)!r}]\n"
            "from dynamics_lab.cli import app\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    *lines, last = out.stdout.strip().splitlines()
    return "\n".join(lines), eval(last.removeprefix("HEAVY "))


@pytest.mark.parametrize("registry", [TASKS, MODELS, MEASUREMENTS, PHENOMENA],
                         ids=lambda r: r.plural)
def test_names_read_from_source_equal_the_registry_after_a_full_import(registry):
    assert catalog.names(registry) == registry.names()


def test_list_loads_nothing_heavy():
    text, heavy = modules_loaded_by("list")
    assert heavy == []
    assert "grokking" in text and "modular_arithmetic" in text and "hessian" in text


def test_show_loads_nothing_heavy_and_prints_the_last_value_of_every_metric(tmp_path):
    run = RunDir.create(tmp_path / "run", {"name": "x", "trainer": {"max_steps": 30}}, seed=0)
    run.update_meta(status="completed", wall_time_s=1.0)
    run.metrics_path.write_text("step,train/loss,val/acc\n0,2.0,\n10,1.5,0.25\n20,1.0,\n")
    text, heavy = modules_loaded_by("show", str(run.path))
    assert heavy == []
    assert "last metrics (step 20): train/loss=1, val/acc=0.25" in text


def test_show_reads_a_run_that_kept_only_its_parquet_within_a_second(tmp_path):
    from dynamics_lab.tracking.metrics import write_parquet

    run = RunDir.create(tmp_path / "run", {"name": "x", "trainer": {"max_steps": 30}}, seed=0)
    run.update_meta(status="completed", wall_time_s=1.0)
    run.metrics_path.write_text("step,train/loss,val/acc\n0,2.0,\n10,1.5,0.25\n20,1.0,\n")
    assert write_parquet(run.metrics_path, run.parquet_path)
    expected = last_metrics(run.metrics_path)
    run.metrics_path.unlink()
    assert last_run_metrics(run.metrics_path, run.parquet_path) == expected
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    text, heavy = modules_loaded_by("show", str(run.path))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of a fresh interpreter, imports included (pyarrow's ~0.3 s among them); the
    # wall time also counts waiting for a busy machine's cores
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    assert heavy == []
    assert "last metrics (step 20): train/loss=1, val/acc=0.25" in text
    assert cpu < 1.0, f"show took {cpu:.2f} CPU seconds"
    run.parquet_path.write_bytes(b"not parquet")
    with pytest.raises(MetricsError, match="metrics.parquet: not a metrics table"):
        last_run_metrics(run.metrics_path, run.parquet_path)


def test_last_metrics_agrees_with_the_table_reader(tmp_path):
    path = tmp_path / "metrics.csv"
    # a merged row logged twice at step 10, a missing cell, and a torn last line
    path.write_text("step,a,b\n0,1.0,\n10,2.0,\n10,2.0,5.0\n20,,6.0\n30,7")
    step, last = last_metrics(path)
    table = read_metrics(path).ffill().iloc[-1]
    assert step == int(table["step"]) == 20
    assert last == {k: v for k, v in table.items() if k != "step"} == {"a": 2.0, "b": 6.0}
    path.write_text("step,a\n0,x\n")
    with pytest.raises(MetricsError, match=r"metrics.csv:2: a='x' is not a number"):
        last_metrics(path)
    path.write_text("")
    assert last_metrics(path) is None


def test_metrics_and_progress_helpers_import_without_pandas_or_lightning():
    code = ("import sys; import dynamics_lab.tracking.metrics, dynamics_lab.tracking.progress\n"
            "print('pandas' in sys.modules, 'lightning' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
