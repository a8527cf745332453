"""The Slurm launcher without Slurm's accounting: `squeue` says which tasks the scheduler still
holds, the line slurmstepd writes into a task's log says why it stopped one. A fake squeue
stands in for the scheduler; the log lines are the ones slurm-wlm 22.05 writes."""

import json
import os
from types import SimpleNamespace

import pytest

from dynamics_lab.sweep.slurm import SlurmError, active_runs, note_stops, stop_reason, wait
from dynamics_lab.tracking.rundir import RunDir, Status

TIME_LIMIT = ("slurmstepd-vm: error: *** JOB 7 ON vm CANCELLED AT 2026-11-29T02:44:57 "
              "DUE TO TIME LIMIT ***")
SCANCEL = "slurmstepd-vm: error: *** STEP 2.0 ON vm CANCELLED AT 2026-11-29T02:40:48 ***"
PREEMPTED = ("slurmstepd-n1: error: *** JOB 9 ON n1 CANCELLED AT 2026-11-29T03:00:00 "
             "DUE TO PREEMPTION ***")


@pytest.fixture
def squeue(tmp_path, monkeypatch):
    """`squeue(stdout, rc, stderr)` puts a fake squeue first on PATH; returns its argv log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def install(stdout="", rc=0, stderr=""):
        (tmp_path / "out").write_text(stdout)
        (tmp_path / "err").write_text(stderr)
        script = bin_dir / "squeue"
        script.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/argv\ncat {tmp_path}/out\n'
                          f'cat {tmp_path}/err >&2\nexit {rc}\n')
        script.chmod(0o755)
        return tmp_path / "argv"

    return install


def log_with(tmp_path, *lines):
    log = tmp_path / "7_0_log.err"
    log.write_text("".join(f"{line}\n" for line in ("submitit INFO starting", *lines)))
    return log


@pytest.mark.parametrize("line, reason", [(TIME_LIMIT, "time limit"),
                                          (SCANCEL, "cancelled (scancel)"),
                                          (PREEMPTED, "preempted")])
def test_the_line_slurmstepd_logs_says_why_a_task_stopped(tmp_path, squeue, line, reason):
    argv = squeue(rc=1, stderr="slurm_load_jobs error: Unable to contact slurm controller")
    assert stop_reason("7_0", log_with(tmp_path, "training...", line)) == reason
    assert not argv.exists()  # the log answers; the scheduler is not asked


@pytest.mark.parametrize("queue, reason", [("7_0|COMPLETING|TimeLimit\n", "time limit"),
                                           ("7_0|TIMEOUT|TimeLimit\n", "time limit"),
                                           ("7_0|CANCELLED|None\n", "cancelled (scancel)"),
                                           ("7_0|COMPLETED|None\n", None)])
def test_without_the_line_the_queue_says_why(tmp_path, squeue, queue, reason):
    argv = squeue(queue)
    assert stop_reason("7_0", log_with(tmp_path)) == reason
    assert "-j 7_0" in argv.read_text()


def test_a_task_slurm_forgot_and_an_unreachable_controller_give_no_reason(tmp_path, squeue):
    squeue(rc=1, stderr="slurm_load_jobs error: Invalid job id specified")
    assert stop_reason("7_0", tmp_path / "missing.err") is None
    squeue(rc=1, stderr="slurm_load_jobs error: Unable to contact slurm controller")
    assert stop_reason("7_0", log_with(tmp_path)) is None


def test_runs_count_as_active_while_slurm_holds_their_task(tmp_path, squeue):
    launches = [{"launcher": "slurm", "cluster": "slurm",
                 "jobs": [{"id": "5_0", "runs": ["a"]}, {"id": "5_1", "runs": ["b"]},
                          {"id": "5_2", "runs": ["c", "d"]}]},
                {"launcher": "slurm", "cluster": "local", "jobs": [{"id": "123", "runs": ["e"]}]}]
    (tmp_path / "sweep.json").write_text(json.dumps({"launches": launches}))
    argv = squeue("5_0|RUNNING|None\n5_1|COMPLETED|None\n5_2|PENDING|Resources\n")
    assert active_runs(tmp_path) == {"a", "c", "d"}
    assert argv.read_text().split()[-1] == "5_0,5_1,5_2"  # one call; the local launch not asked
    squeue(rc=1, stderr="slurm_load_jobs error: Unable to contact slurm controller")
    with pytest.raises(SlurmError, match="Unable to contact"):
        active_runs(tmp_path)  # unknown is not "nothing runs": never launch a run twice


def make_run(path, **meta):
    run = RunDir.create(path, {"name": "grokking"}, seed=0)
    run.update_meta(**meta)
    return run


def test_runs_this_task_stopped_get_slurm_s_reason_beside_killed(tmp_path, squeue):
    squeue(rc=1, stderr="should not be asked")
    me = os.getpid()
    killed = make_run(tmp_path / "killed", status=Status.KILLED, pid=me,
                      error="interrupted (SIGTERM)")
    left = make_run(tmp_path / "left", status=Status.RUNNING, pid=me, _t0=0.0)
    done = make_run(tmp_path / "done", status=Status.COMPLETED, pid=me)
    other = make_run(tmp_path / "other", status=Status.KILLED, pid=me + 1, error="earlier")
    note_stops([str(r.path) for r in (killed, left, done, other)], "7_0",
               log_with(tmp_path, TIME_LIMIT))
    assert killed.meta["error"] == "stopped by Slurm: time limit (task 7_0); interrupted (SIGTERM)"
    assert left.status == Status.KILLED
    assert left.meta["error"] == "stopped by Slurm: time limit (task 7_0)"
    assert done.status == Status.COMPLETED and "error" not in done.meta
    assert other.meta["error"] == "earlier"


def test_waiting_ends_when_the_queue_lets_go_and_names_silent_ends(tmp_path, squeue):
    squeue("9_0|TIMEOUT|TimeLimit\n9_1|COMPLETED|None\n")
    silent = make_run(tmp_path / "silent", status=Status.RUNNING, pid=1, _t0=0.0)
    finished = make_run(tmp_path / "finished", status=Status.COMPLETED)
    # Stand-in submitit jobs: wait() reads only their id and stderr path, no Slurm needed.
    jobs = [SimpleNamespace(job_id=f"9_{i}", paths=SimpleNamespace(stderr=tmp_path / "none"))
            for i in range(2)]
    statuses = wait(jobs, [[silent.path], [finished.path]], "slurm")
    assert statuses == {silent.path: Status.KILLED, finished.path: Status.COMPLETED}
    assert silent.meta["error"] == ("slurm task 9_0 ended without recording an ending: "
                                    "time limit")
