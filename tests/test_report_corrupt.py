"""`dynlab report` skips a run whose metrics.csv is corrupt, says so, and still draws the rest."""

from typer.testing import CliRunner

from dynamics_lab.cli import app


def test_report_skips_a_corrupt_run_with_a_warning(runs_root, tiny_overrides, tmp_path):
    args = ["run", "grokking", "--sweep"]
    for o in [*tiny_overrides, "sweep.grid={optim.weight_decay: [0.0, 1.0]}", "sweep.seeds=[0]"]:
        args += ["--set", o]
    assert CliRunner().invoke(app, args).exit_code == 0
    metrics = sorted(runs_root.rglob("metrics.csv"))
    assert len(metrics) == 2
    with metrics[0].open("a") as f:
        f.write("50,not-a-number,1,2,3,4,5,6,7,8,9\n")  # extra fields and text in a number
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["report", "grokking", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "metrics.csv" in result.output and "skip" in result.output.lower()
    assert (out / "summary.csv").is_file() and (out / "accuracy_curves.png").is_file()
