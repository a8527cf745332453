"""`--launcher slurm` against a real Slurm: one job array, a live report, scancel and resume,
time limits. Needs a running cluster (`make test-slurm` starts a one-node one with
scripts/slurm-local.sh); marked `slurm`, so the default run leaves it out."""

import json
import shutil
import subprocess
import time

import pandas as pd
import pytest
from conftest import sets
from typer.testing import CliRunner

from dynamics_lab.cli import app
from dynamics_lab.tracking.rundir import RunDir, Status


def why_no_slurm() -> str | None:
    """None when a controller answers and a node can take jobs; else why these tests skip."""
    if shutil.which("sinfo") is None:
        return ("no Slurm here (sinfo not found); `make test-slurm` starts a one-node cluster "
                "with scripts/slurm-local.sh (root, Debian packages)")
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if out.returncode != 0 or not {"idle", "mixed", "allocated"} & set(out.stdout.split()):
        said = (out.stderr or out.stdout).strip()
        return f"Slurm is here but no node takes jobs ({said}); scripts/slurm-local.sh start"
    return None


NO_SLURM = why_no_slurm()
pytestmark = [pytest.mark.slurm, pytest.mark.skipif(NO_SLURM is not None, reason=NO_SLURM or "")]

# Small grokking runs: ~5 s of training each (after ~5 s of imports), a checkpoint every 100
# steps, so a task cancelled mid-run has a checkpoint to resume from and steps left to train.
STEPS = 3000
RUN = ["task.p=23", "model.embed_dim=8", "model.width=32", f"trainer.max_steps={STEPS}",
       "trainer.eval_every=100", "trainer.log_every=100", "trainer.checkpoint_every=100",
       "sweep.seeds=[0]"]
GRID = "sweep.grid={optim.weight_decay: [0.0, 1.0], task.train_fraction: [0.4, 0.5]}"
QUEUED = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED"}


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])



def squeue(job_ids) -> dict[str, str]:
    """Array task id -> Slurm state, finished tasks included (kept MinJobAge seconds)."""
    out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i %T",
                          "-j", ",".join(job_ids)], capture_output=True, text=True)
    return dict(line.split() for line in out.stdout.splitlines())


def array_ids(sweep) -> dict[str, str]:
    """Run id -> the array task id of its latest launch, from the manifest."""
    launches = json.loads((sweep / "sweep.json").read_text())["launches"]
    return {run: job["id"] for launch in launches for job in launch["jobs"] for run in job["runs"]}


def statuses(sweep) -> dict[str, Status]:
    return {p.parent.name: RunDir(p.parent).status for p in sweep.glob("*/meta.json")}


def wait_until(condition, timeout_s, what, poll_s=0.5):
    deadline = time.time() + timeout_s
    while not (found := condition()):
        assert time.time() < deadline, f"{what}: not within {timeout_s}s"
        time.sleep(poll_s)
    return found


def wait_for_queue(job_ids, timeout_s=240):
    """Until Slurm holds none of these tasks any more; their final states."""
    return wait_until(lambda: (s := squeue(job_ids)) and not QUEUED & set(s.values()) and s,
                      timeout_s, f"tasks {job_ids} leaving the queue", poll_s=1)


@pytest.fixture(scope="module")
def array_sweep(tmp_path_factory):
    """A 4-run sweep submitted to Slurm; the array runs on while the tests below look at it."""
    root = tmp_path_factory.mktemp("slurm")
    result = invoke("run", "grokking", "--sweep", "--launcher", "slurm", "--out", root / "runs",
                    *sets([*RUN, GRID]))
    assert result.exit_code == 0, result.output
    return next((root / "runs").rglob("sweep.json")).parent, result.output, root


def test_a_sweep_goes_out_as_one_job_array(array_sweep):
    sweep, output, _ = array_sweep
    assert "submitted 4 array task(s)" in output
    launch = json.loads((sweep / "sweep.json").read_text())["launches"][-1]
    assert launch["launcher"] == "slurm" and launch["cluster"] == "slurm"
    ids = [job["id"] for job in launch["jobs"]]
    assert len({i.split("_")[0] for i in ids}) == 1, f"not one array: {ids}"
    assert sorted(i.split("_")[1] for i in ids) == ["0", "1", "2", "3"]
    assert set(squeue(ids)) == set(ids)  # the scheduler holds exactly these four tasks


def test_report_shows_pending_and_running_runs_while_the_array_runs(array_sweep):
    sweep, _, root = array_sweep
    result = invoke("report", "grokking", "--runs", sweep, "--out", root / "early")
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(root / "early" / "summary.csv")
    assert len(summary) == 4
    assert {"pending", "running"} & set(summary["status"]), summary["status"].tolist()


def test_a_cancelled_task_is_killed_then_resumed_to_the_same_metrics(array_sweep):
    sweep, _, root = array_sweep
    ids = array_ids(sweep)

    def checkpointed_run():
        return next((name for name, status in statuses(sweep).items()
                     if status == Status.RUNNING and RunDir(sweep / name).has_checkpoint()), None)

    victim = wait_until(checkpointed_run, 120, "a running task with a checkpoint", poll_s=0.1)
    subprocess.run(["scancel", ids[victim]], check=True)
    states = wait_for_queue(list(ids.values()))
    assert states[ids[victim]] == "CANCELLED"
    after_cancel = statuses(sweep)
    assert after_cancel.pop(victim) == Status.KILLED
    assert set(after_cancel.values()) == {Status.COMPLETED}
    killed = RunDir(sweep / victim)
    assert killed.has_checkpoint() and "cancel" in killed.meta["error"]
    ended = {name: RunDir(sweep / name).meta["ended"] for name in after_cancel}

    result = invoke("run", "grokking", "--sweep", "--launcher", "slurm", "--wait",
                    "--resume-sweep", sweep, *sets([*RUN, GRID]))
    assert result.exit_code == 0, result.output
    assert "launching 1" in result.output
    assert set(statuses(sweep).values()) == {Status.COMPLETED}
    launches = json.loads((sweep / "sweep.json").read_text())["launches"]
    assert [job["runs"] for job in launches[-1]["jobs"]] == [[victim]]
    assert {name: RunDir(sweep / name).meta["ended"] for name in after_cancel} == ended
    resumed = RunDir(sweep / victim).meta["resumed_at_steps"]
    assert len(resumed) == 1 and 0 < resumed[0] < STEPS

    local = invoke("run", "grokking", "--sweep", "--launcher", "local", "--workers", "2",
                   "--out", root / "local", *sets([*RUN, GRID]))
    assert local.exit_code == 0, local.output
    reference = next((root / "local").rglob("sweep.json")).parent
    for name in statuses(sweep):
        got = pd.read_csv(sweep / name / "metrics.csv")
        assert got["step"].is_unique and got["step"].is_monotonic_increasing
        pd.testing.assert_frame_equal(got, pd.read_csv(reference / name / "metrics.csv"),
                                      check_exact=True)


def test_a_task_past_its_time_limit_is_recorded_as_killed_by_the_time_limit(tmp_path):
    # Slurm's limit is whole minutes and checked every ~30 s: the run must outlast 90 s.
    long_run = [*RUN, "trainer.max_steps=1000000", "trainer.eval_every=1000",
                "trainer.log_every=1000", "trainer.checkpoint_every=1000",
                "sweep.slurm.time_min=1"]
    result = invoke("run", "grokking", "--launcher", "slurm", "--out", tmp_path, *sets(long_run))
    assert result.exit_code == 0, result.output
    sweep = next(tmp_path.rglob("sweep.json")).parent
    (run_id, job_id), = array_ids(sweep).items()
    assert wait_for_queue([job_id], timeout_s=200)[job_id] == "TIMEOUT"
    run = RunDir(sweep / run_id)
    assert run.status == Status.KILLED, run.meta
    assert "time limit" in run.meta["error"] and run.has_checkpoint()
    assert len(pd.read_csv(run.metrics_path)) > 1  # it trained, then was stopped
