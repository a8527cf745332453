"""Ensembles: K members in one vectorized model log what K separate runs log."""

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from dynamics_lab.cli import app
from dynamics_lab.config import load_experiment
from dynamics_lab.sweep import expand, prepare_sweep
from dynamics_lab.sweep.jobs import group_jobs
from dynamics_lab.tracking.rundir import RunDir
from dynamics_lab.train.ensemble import execute_ensemble
from dynamics_lab.train.runner import execute

# float64 makes "equal up to rounding" tight: the vmapped and plain matmuls agree to ~1e-15.
EXACT = ["trainer.dtype=float64", "logging.wandb=false"]


def separate_and_ensemble(tmp_path, overrides):
    config = load_experiment("grokking", "quick", overrides)
    separate = prepare_sweep(config, expand(config), tmp_path / "separate")
    together = prepare_sweep(config, expand(config), tmp_path / "ensemble")
    for path in separate:
        assert execute(RunDir(path), echo=lambda *_: None).status == "completed"
    results = execute_ensemble([RunDir(p) for p in together], echo=lambda *_: None)
    assert [r.status for r in results] == ["completed"] * len(together)
    return separate, together


def assert_same_metrics(separate, together, tol=1e-10):
    for a, b in zip(separate, together):
        expected, got = pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv")
        assert list(expected.columns) == list(got.columns)
        assert expected["step"].tolist() == got["step"].tolist()
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=tol, atol=tol)
        verdict = json.loads((b / "verdict.json").read_text())
        assert verdict == json.loads((a / "verdict.json").read_text())


def test_an_ensemble_of_seeds_equals_separate_runs(tmp_path, tiny_overrides):
    separate, together = separate_and_ensemble(
        tmp_path, tiny_overrides + EXACT + ["sweep.grid={}", "sweep.seeds=[0, 1, 2]"])
    assert_same_metrics(separate, together)
    meta = json.loads((together[0] / "meta.json").read_text())
    assert meta["ensemble"]["size"] == 3 and meta["status"] == "completed"


def test_minibatches_and_weight_decay_per_member(tmp_path, tiny_overrides):
    # Each member draws its own minibatch order and decays with its own weight decay.
    separate, together = separate_and_ensemble(tmp_path, tiny_overrides + EXACT + [
        "trainer.batch_size=32", "sweep.grid={optim.weight_decay: [0.0, 1.0]}", "sweep.seeds=[3]"])
    assert_same_metrics(separate, together)


def test_jobs_group_runs_that_differ_only_in_seed_or_weight_decay(tmp_path, tiny_overrides):
    config = load_experiment("grokking", "quick", tiny_overrides + [
        "sweep.grid={optim.weight_decay: [0.0, 1.0], task.train_fraction: [0.3, 0.5]}",
        "sweep.seeds=[0, 1]"])
    dirs = prepare_sweep(config, expand(config), tmp_path / "s")
    jobs = group_jobs(dirs, 3)
    assert sorted(map(len, jobs)) == [1, 1, 3, 3]
    for job in jobs:
        fractions = {RunDir(p).config()["task"]["train_fraction"] for p in job}
        assert len(fractions) == 1
    assert group_jobs(dirs, 1) == [[d] for d in dirs]


def test_cli_ensemble_writes_one_run_dir_per_member(runs_root, tiny_overrides):
    sets = [x for o in tiny_overrides for x in ("--set", o)]
    result = CliRunner().invoke(app, ["run", "grokking", "--ensemble", "2", "--seed", "5", *sets])
    assert result.exit_code == 0, result.output
    members = sorted(p.parent for p in runs_root.rglob("meta.json"))
    assert [m.name for m in members] == ["seed=5", "seed=6"]
    for member in members:
        meta = json.loads((member / "meta.json").read_text())
        assert meta["status"] == "completed" and meta["ensemble"]["size"] == 2
        assert pd.read_csv(member / "metrics.csv")["step"].tolist() == [0, 10, 20, 30, 40]
        assert (member / "verdict.json").exists()
    manifest = json.loads(next(runs_root.rglob("sweep.json")).read_text())
    assert manifest["launches"][0]["jobs"][0]["runs"] == ["seed=5", "seed=6"]


def test_cli_ensemble_measures_every_member(runs_root, tiny_overrides):
    sets = [x for o in tiny_overrides for x in ("--set", o)]
    result = CliRunner().invoke(app, ["run", "grokking", "--ensemble", "2", *sets,
                                      "--set", "measure.hessian={every: 10, probe_size: 64}"])
    assert result.exit_code == 0, result.output
    for member in sorted(p.parent for p in runs_root.rglob("meta.json")):
        sharpness = pd.read_csv(member / "metrics.csv")["hessian/lambda_max"]
        assert sharpness.notna().sum() == 5 and (sharpness.dropna() > 0).all()


def test_auto_packs_what_keeps_shapes_and_splits_what_changes_them(tmp_path, monkeypatch):
    config = load_experiment("edge_of_stability", "quick", [
        "sweep.grid={optim.lr: [0.1, 0.2], model.width: [8, 16], model.init_scale: [0.5, 1.0]}",
        "sweep.seeds=[0, 1]"])
    dirs = prepare_sweep(config, expand(config), tmp_path / "s")
    jobs = group_jobs(dirs, "auto")
    assert sorted(map(len, jobs)) == [8, 8]  # one process per width
    for job in jobs:
        assert len({RunDir(p).config()["model"]["width"] for p in job}) == 1

    import dynamics_lab.footprint as footprint

    def member(width):
        return footprint.member_bytes(load_experiment("edge_of_stability", "quick",
                                                      [f"model.width={width}"]))

    memory = 2 * 3 * member(16)  # half of it for members: 3 of width 16
    monkeypatch.setattr(footprint, "machine_memory", lambda device: memory)
    narrow = int(memory / 2 // member(8))
    assert 3 < narrow < 8
    expected = sorted([3, 3, 2, *[narrow] * (8 // narrow), *([8 % narrow] if 8 % narrow else [])])
    assert sorted(map(len, group_jobs(dirs, "auto"))) == expected


def test_auto_balances_its_processes_over_the_workers(tmp_path):
    # The grokking quick sweep's shape: three train fractions (three groups) x 9 members.
    config = load_experiment("grokking", "quick")
    dirs = prepare_sweep(config, expand(config), tmp_path / "s")
    assert sorted(map(len, group_jobs(dirs, "auto"))) == [9, 9, 9]  # one worker: one per group
    jobs = group_jobs(dirs, "auto", workers=2)
    # Three groups on two workers would run 18 members on the busiest one; chunks of 4 and 5
    # let both finish after 14 (27 / 2 rounded up), with the fewest processes that do.
    assert list(map(len, jobs)) == [5, 5, 5, 4, 4, 4]  # in the order workers take them
    assert sorted(p for job in jobs for p in job) == sorted(dirs)
    for job in jobs:
        assert len({RunDir(p).config()["task"]["train_fraction"] for p in job}) == 1
    assert sorted(map(len, group_jobs(dirs, 3, workers=2))) == [3] * 9  # a fixed size is kept


def test_cli_auto_with_two_workers_launches_balanced_ensembles(runs_root, tiny_overrides):
    sets = [x for o in tiny_overrides for x in ("--set", o)]
    result = CliRunner().invoke(app, ["run", "grokking", "--sweep", "--ensemble", "auto",
                                      "--workers", "2", *sets, "--set", "sweep.grid={}",
                                      "--set", "sweep.seeds=[0, 1, 2, 3, 4]"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(next(runs_root.rglob("sweep.json")).read_text())
    launch = manifest["launches"][0]
    assert launch["workers"] == 2
    assert sorted(len(job["runs"]) for job in launch["jobs"]) == [2, 3]
    statuses = [json.loads(p.read_text())["status"] for p in runs_root.rglob("meta.json")]
    assert statuses == ["completed"] * 5


def test_balancing_never_exceeds_a_groups_cap():
    from dynamics_lab.sweep.jobs import balance

    groups = [[f"a{i}" for i in range(16)], [f"b{i}" for i in range(3)]]
    chunks = balance(groups, caps=[5, 1024], workers=2)
    assert all(len(c) <= 5 for c in chunks if c[0].startswith("a"))
    assert sorted(x for c in chunks for x in c) == sorted(groups[0] + groups[1])
    assert all(len({x[0] for x in c}) == 1 for c in chunks)  # groups never mix
    loads = [0, 0]
    for c in sorted(chunks, key=len, reverse=True):
        loads[loads.index(min(loads))] += len(c)
    assert max(loads) == 10  # 19 members on two workers: 10 on the busier
    assert balance([groups[0]], caps=[1024], workers=2) == [groups[0][:8], groups[0][8:]]
    assert group_jobs([], "auto", workers=2) == []  # a resumed sweep with nothing left to pack


def test_adam_runs_with_different_step_sizes_do_not_share_an_ensemble(tmp_path, tiny_overrides):
    config = load_experiment("grokking", "quick", tiny_overrides + [
        "sweep.grid={optim.lr: [0.001, 0.003]}", "sweep.seeds=[0, 1]"])
    jobs = group_jobs(prepare_sweep(config, expand(config), tmp_path / "s"), "auto")
    assert sorted(map(len, jobs)) == [2, 2]  # AdamW's update is not linear in its step size


def test_the_cli_refuses_a_bad_ensemble_size_in_one_line(runs_root):
    result = CliRunner().invoke(app, ["run", "grokking", "--ensemble", "many"])
    assert result.exit_code == 2 and "'many'" in result.output
    result = CliRunner().invoke(app, ["run", "grokking", "--ensemble", "auto"])
    assert result.exit_code == 2 and "add --sweep" in result.output
    assert not runs_root.exists()


def test_a_killed_ensembles_members_regroup_to_resume_and_a_lone_checkpoint_goes_alone(
        tmp_path, tiny_overrides):
    config = load_experiment("grokking", "quick", tiny_overrides + [
        "sweep.grid={}", "sweep.seeds=[0, 1, 2, 3]"])
    dirs = prepare_sweep(config, expand(config), tmp_path / "s")
    runs = [RunDir(p) for p in dirs]
    members = {"size": 2, "members": [dirs[1].name, dirs[3].name]}
    for run in (runs[1], runs[3]):  # an ensemble of seeds 1 and 3, killed after a checkpoint
        run.update_meta(status="killed", ensemble=members)
        run.checkpoint_dir.mkdir(exist_ok=True)
        run.last_checkpoint.write_bytes(b"checkpoint")
    runs[2].update_meta(status="killed")  # a single run with its own checkpoint
    runs[2].checkpoint_dir.mkdir(exist_ok=True)
    runs[2].last_checkpoint.write_bytes(b"checkpoint")
    assert group_jobs(dirs, "auto") == [[dirs[1], dirs[3]], [dirs[2]], [dirs[0]]]
    assert group_jobs(dirs[:2], "auto") == [[dirs[1]], [dirs[0]]]  # its mate is not back
