"""`dynlab phase` end to end with a stand-in launcher that writes each run's verdict from a
known phase map: rounds in one sweep dir, the manifest, load_sweep, outputs, --resume-sweep,
and bad input refused in one line with exit status 2 and nothing written."""

import json

import pytest
from typer.testing import CliRunner

import dynamics_lab
from dynamics_lab.cli import app
from dynamics_lab.phenomena.phase_map import MAP_FILE, PANEL_FILE, POINTS_FILE
from dynamics_lab.report import write_report
from dynamics_lab.sweep import phase as phase_module
from dynamics_lab.sweep.launch import RunRequest
from dynamics_lab.sweep.phase import PhaseRequest, plan_search, run_search, write_outputs
from dynamics_lab.tracking.rundir import RunDir, Status, read_manifest

WD, FRACTION = "optim.weight_decay", "task.train_fraction"
VERDICTS = {  # the grokking verdicts that read as each phase
    "grokking": {"outcome": "detected", "fit_step": 100, "generalization_step": 900},
    "memorization": {"outcome": "not_detected", "fit_step": 100, "final_val_acc": 0.05},
    "confusion": {"outcome": "not_detected", "fit_step": None},
}


def true_phase(wd: float, fraction: float) -> str:
    if wd > 3:
        return "confusion"
    return "grokking" if fraction > 0.55 - 0.05 * wd else "memorization"


class FakeLaunch:
    """Stands in for sweep.launch.launch: finishes each unfinished run with its true phase's
    verdict (or fails the ones in `fail`), and remembers what it ran."""

    def __init__(self, fail=()):
        self.ran, self.fail = [], set(fail)

    def __call__(self, plan, echo):
        statuses = {}
        values = {r["run_id"]: r["overrides"] for r in read_manifest(plan.sweep_dir)["runs"]}
        for path in plan.run_dirs:
            run = RunDir(path)
            if run.status.finished:
                continue
            self.ran.append(path.name)
            if path.name in self.fail:
                run.finish(Status.FAILED, "stand-in failure")
            else:
                phase = true_phase(values[path.name][WD], values[path.name].get(FRACTION, 0.5))
                (path / "metrics.csv").write_text("step,train/acc\n0,0.1\n10,1.0\n")
                run.write_verdict({"phenomenon": "grokking", **VERDICTS[phase]})
                run.finish(Status.COMPLETED)
            statuses[path] = run.status
        return statuses


def request(tmp_path, tiny_overrides, budget=None, resume=None, seeds=1, coarse=4,
            resolution=13):
    run = RunRequest("grokking", overrides=tiny_overrides, out=tmp_path / "runs",
                     resume_sweep=resume, wandb=False)
    return PhaseRequest(run, [f"{WD}=0.1:10:log", f"{FRACTION}=0.3:0.7"], budget=budget,
                        resolution=resolution, seeds=seeds, coarse=coarse)


def test_rounds_refine_the_boundary_in_one_sweep_that_load_sweep_reads(
        tmp_path, tiny_overrides, monkeypatch):
    fake = FakeLaunch()
    monkeypatch.setattr(phase_module, "launch", fake)
    search = plan_search(request(tmp_path, tiny_overrides, coarse=3, resolution=9))
    why = run_search(search, echo=lambda line: None)
    assert why.startswith("resolution reached")
    manifest = read_manifest(search.sweep_dir)
    rounds = manifest["phase"]["rounds"]
    assert len(rounds) == 3 and rounds[0]["points"] == 9  # coarse, then two halvings
    assert len(fake.ran) == len(manifest["runs"]) == len(set(fake.ran))
    assert len(manifest["runs"]) < 81 * 2 / 3  # fewer than the 9x9 grid
    assert set(manifest["grid"]) == {WD, FRACTION}
    table = dynamics_lab.load_sweep(search.sweep_dir)
    assert set(table["run_id"]) == {r["run_id"] for r in manifest["runs"]}
    assert {WD, FRACTION, "verdict/outcome"} <= set(table.columns)
    written = write_outputs(search, echo=lambda line: None)
    assert {p.name for p in written} == {POINTS_FILE, MAP_FILE, PANEL_FILE}
    points = (search.sweep_dir / POINTS_FILE).read_text().splitlines()
    assert len(points) == 1 + len(manifest["runs"])
    panel = json.loads((search.sweep_dir / PANEL_FILE).read_text())["panel"]
    assert panel["x"] == WD and panel["y"] == [FRACTION] and panel["color"] == "phase"
    lines = []
    reported = write_report(search.sweep_dir, out=tmp_path / "report", echo=lines.append,
                            wandb=False)
    assert {POINTS_FILE, MAP_FILE, PANEL_FILE} <= {p.name for p in reported}
    assert any(line.startswith(f"phase map: {len(manifest['runs'])} points") for line in lines)


def test_resume_goes_on_past_the_budget_and_reruns_what_failed(
        tmp_path, tiny_overrides, monkeypatch):
    first = FakeLaunch(fail={f"weight_decay=0.1,train_fraction=0.3,seed={s}" for s in (0, 1)})
    monkeypatch.setattr(phase_module, "launch", first)
    search = plan_search(request(tmp_path, tiny_overrides, budget=24, seeds=2, coarse=3,
                                 resolution=9))
    why = run_search(search, echo=lambda line: None)
    assert why.startswith("budget reached")
    used = len(read_manifest(search.sweep_dir)["runs"])
    assert 18 <= used <= 24
    again = FakeLaunch()
    monkeypatch.setattr(phase_module, "launch", again)
    resumed = plan_search(request(tmp_path, tiny_overrides, budget=200, seeds=2, coarse=3,
                                  resolution=9, resume=search.sweep_dir))
    assert run_search(resumed, echo=lambda line: None).startswith("resolution reached")
    assert sorted(first.fail) == sorted(again.ran[:2])  # the failed runs first, then new ones
    assert not set(again.ran[2:]) & set(first.ran)
    assert len(read_manifest(search.sweep_dir)["runs"]) == used + len(again.ran) - 2


def test_one_axis_bisects_to_the_finest_step(tmp_path, tiny_overrides, monkeypatch):
    monkeypatch.setattr(phase_module, "launch", FakeLaunch())
    run = RunRequest("grokking", overrides=tiny_overrides, out=tmp_path / "runs", wandb=False)
    search = plan_search(PhaseRequest(run, [f"{WD}=0.1:10:log"], resolution=25))
    assert run_search(search, echo=lambda line: None).startswith("resolution reached")
    runs = read_manifest(search.sweep_dir)["runs"]
    # two boundaries (memorization | grokking at wd 1, grokking | confusion at wd 3): the
    # coarse 4, then one midpoint per boundary a round, three rounds down to 25 points
    assert len(runs) == 4 + 2 * 3
    wds = sorted(r["overrides"][WD] for r in runs)
    index = search.lattice.values(0).index
    crossings = [(a, b) for a, b in zip(wds, wds[1:]) if true_phase(a, 0.5) != true_phase(b, 0.5)]
    assert len(crossings) == 2 and all(index(b) - index(a) == 1 for a, b in crossings)
    written = write_outputs(search, echo=lambda line: None)
    assert {p.name for p in written} == {POINTS_FILE, MAP_FILE, PANEL_FILE}


def test_a_resume_with_other_axes_is_refused(tmp_path, tiny_overrides, monkeypatch):
    monkeypatch.setattr(phase_module, "launch", FakeLaunch())
    search = plan_search(request(tmp_path, tiny_overrides, budget=4, coarse=2, resolution=3))
    run_search(search, echo=lambda line: None)
    other = request(tmp_path, tiny_overrides, resume=search.sweep_dir, coarse=2, resolution=5)
    with pytest.raises(Exception, match="original flags"):
        plan_search(other)


def test_the_command_writes_the_map_and_says_which_runs_did_not_finish(
        tmp_path, tiny_overrides, monkeypatch):
    broken = "weight_decay=10.0,train_fraction=0.7,seed=0"
    monkeypatch.setattr(phase_module, "launch", FakeLaunch(fail={broken}))
    sets = [item for o in tiny_overrides for item in ("--set", o)]
    result = CliRunner().invoke(app, [
        "phase", "grokking", "--x", f"{WD}=0.1:10:log", "--y", f"{FRACTION}=0.3:0.7",
        "--coarse", "2", "--resolution", "3", *sets, "--out", str(tmp_path), "--no-wandb"])
    assert result.exit_code == 1, result.output
    assert "round 1: 4 point(s) x 1 seed(s) = 4 run(s)" in result.output
    assert "resolution reached" in result.output
    assert f"1 run(s) did not finish:\n  {broken}: failed (stand-in failure)" in result.output
    assert result.output.count("wrote ") == 3


BAD = [
    (["--x", f"{WD}=1:1"], "empty range"),
    (["--x", f"{WD}=1:0.1"], "LO must be below HI"),
    (["--x", f"{WD}=0:1:log"], "above 0"),
    (["--x", "optim.weight_decy=0.1:1"], "unknown key 'optim.weight_decy'"),
    (["--x", "seed=0:3"], "--seeds"),
    (["--x", "logging.project=0:1"], "no run varies"),
    (["--x", f"{WD}=0.1:1", "--y", f"{WD}=0.1:1"], "both name"),
    (["--x", f"{WD}=0.1:1", "--y", f"{FRACTION}=0.3:0.7", "--budget", "15"],
     "below the coarse grid's 16 runs"),
    (["--x", f"{WD}=0.1:1", "--seeds", "2", "--budget", "7"], "below the coarse grid's 8"),
    (["--x", f"{WD}=0.1:1", "--resolution", "3"], "below the coarse grid"),
    (["--x", f"{WD}=0.1:1", "--launcher", "wandb"], "local or slurm"),
]


@pytest.mark.parametrize("args, says", BAD)
def test_bad_input_is_refused_up_front(tmp_path, tiny_overrides, args, says):
    sets = [item for o in tiny_overrides for item in ("--set", o)]
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["phase", "grokking", *args, *sets, "--out", str(out),
                                      "--no-wandb"])
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()
