"""`--launcher slurm`: a sweep's jobs as one submitit job array; each task runs `run_task`.

Settings come from the config's `sweep.slurm` section (or the matching `run` flags); the array
task ids go into the manifest. Run states are read from the run directories (meta.json), never
from Slurm's accounting: `sacct` needs slurmdbd, which many clusters (and the one-node
scripts/slurm-local.sh) do not run. The scheduler is only asked, through `squeue`, which tasks
it still holds; a run Slurm stopped (scancel, time limit, preemption) gets Slurm's reason,
taken from the task's log, beside its `killed` status. `sweep.slurm.cluster=local` runs the
same array on this machine through submitit's LocalExecutor (what the fast tests do).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from dynamics_lab.config import SlurmConfig
from dynamics_lab.sweep.manifest import read_manifest, record_launch
from dynamics_lab.tracking.resume import still_running
from dynamics_lab.tracking.rundir import RunDir, Status

# Task states in which Slurm still holds a task (it may run, or run again).
QUEUED = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED",
                    "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED", "SIGNALING",
                    "STAGE_OUT"})
ENDED_BY = {"TIMEOUT": "time limit", "CANCELLED": "cancelled (scancel)",
            "PREEMPTED": "preempted", "NODE_FAIL": "node failure", "DEADLINE": "deadline",
            "OUT_OF_MEMORY": "out of memory"}
# slurmstepd writes this into the task's stderr before it signals the task; unlike the queue
# entry (gone after MinJobAge), the log keeps it.
STOP_LINE = re.compile(
    r"\*\*\* (?:JOB|STEP) \S+ ON \S+ CANCELLED AT \S+(?: DUE TO ([A-Z ]+?))? \*\*\*")
DUE_TO = {"TIME LIMIT": "time limit", "PREEMPTION": "preempted", "NODE FAILURE": "node failure"}


class SlurmError(RuntimeError):
    """No cluster to submit to, a submission that failed, or a scheduler that does not answer."""


def cluster_of(config: SlurmConfig) -> str:
    if config.cluster:
        return config.cluster
    if shutil.which("srun") is None:
        raise SlurmError("no Slurm on this machine (srun not found); set "
                         "sweep.slurm.cluster=local to run the job array here through submitit")
    return "slurm"


def make_executor(sweep_dir: Path, config: SlurmConfig, name: str):
    """A submitit executor logging under SWEEP_DIR/slurm/, with one array task per job."""
    import submitit

    executor = submitit.AutoExecutor(folder=Path(sweep_dir) / "slurm" / "%j",
                                     cluster=cluster_of(config))
    executor.update_parameters(
        name=name, timeout_min=config.time_min, cpus_per_task=config.cpus_per_run,
        gpus_per_node=config.gpus_per_run, mem_gb=config.mem_gb,
        slurm_partition=config.partition, slurm_array_parallelism=config.array_parallelism,
        slurm_setup=config.setup or None,
        slurm_additional_parameters=config.additional or None,
        local_setup=config.setup or None,
    )
    return executor


def submit(sweep_dir: Path, jobs: list[list[Path]], config: SlurmConfig, name: str) -> list:
    """Submit the jobs as one array; record the task ids in the manifest; return the jobs."""
    if not jobs:
        return []
    executor = make_executor(sweep_dir, config, name)
    try:
        submitted = executor.map_array(run_task, [[str(p) for p in job] for job in jobs])
    except Exception as exc:  # sbatch refused (partition, account, ...): say what it said
        raise SlurmError(f"submission failed: {exc}") from None
    record_launch(sweep_dir, "slurm", jobs, [j.job_id for j in submitted],
                  cluster=cluster_of(config))
    return submitted


def run_task(run_dirs: list[str]) -> dict[str, str]:
    """One array task: `run_job` on its runs, then Slurm's reason beside each run it stopped."""
    import submitit

    from dynamics_lab.train.worker import run_job

    # submitit answers the USR2 it asks for before the time limit by raising inside training
    # (this task cannot requeue itself); the SIGTERM at the limit stops the run with a
    # checkpoint instead, so the warning is ignored. submitit also ignores SIGTERM, which would
    # let a task cancelled before training starts run on until SIGKILL: stop it at once.
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, interrupt)
    env = submitit.JobEnvironment()
    try:
        return {path: str(status) for path, status in run_job(run_dirs).items()}
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # srun repeats the signal; finish the notes
        if env.cluster == "slurm":
            note_stops(run_dirs, env.job_id, env.paths.stderr)


def interrupt(signum: int, frame) -> None:
    """SIGTERM outside training: stop where it lands (training installs its own handler)."""
    from dynamics_lab.tracking.checkpoint import Interrupted

    raise Interrupted(signal.Signals(signum).name)


def note_stops(run_dirs: list[str], task_id: str, log: Path) -> None:
    """Add Slurm's reason to the runs this process stopped (killed, or left running)."""
    mine = [r for r in map(RunDir, run_dirs) if r.meta.get("pid") == os.getpid()
            and r.status in (Status.KILLED, Status.RUNNING)]
    why = stop_reason(task_id, log) if mine else None
    for run in mine:
        note = f"stopped by Slurm: {why or 'task ended'} (task {task_id})"
        if run.status == Status.RUNNING:  # going down without the runner's word
            run.finish(Status.KILLED, note)
        elif why:
            error = run.meta.get("error")
            run.update_meta(error=f"{note}; {error}" if error else note)


def queue_states(task_ids: list[str]) -> dict[str, tuple[str, str]]:
    """Task id -> (state, reason) for the tasks Slurm still knows (finished ones for
    MinJobAge seconds); a SlurmError when the controller does not answer."""
    if not task_ids:
        return {}
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r",
                              "-j", ",".join(sorted(set(task_ids)))],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmError(f"squeue did not answer: {exc}") from None
    if out.returncode != 0:
        if "Invalid job id" in out.stderr:  # the only task asked about is long gone
            return {}
        raise SlurmError(f"squeue failed: {out.stderr.strip() or out.returncode}")
    states = {}
    for line in out.stdout.splitlines():
        task, state, reason = (line.split("|") + ["", ""])[:3]
        states[task] = (state.split(" ")[0], reason)
    return states


def stop_reason(task_id: str, log: Path | None) -> str | None:
    """Why Slurm stopped this task ("time limit", "cancelled (scancel)", ...), or None: from
    the line slurmstepd wrote into its log, else from the queue while Slurm still knows it."""
    try:
        lines = STOP_LINE.findall(Path(log).read_text(errors="replace")) if log else []
    except OSError:
        lines = []
    if lines:
        return DUE_TO.get(lines[-1], lines[-1].lower()) if lines[-1] else ENDED_BY["CANCELLED"]
    try:
        state, reason = queue_states([task_id]).get(task_id, ("", ""))
    except SlurmError:
        return None
    return ENDED_BY["TIMEOUT"] if reason == "TimeLimit" else ENDED_BY.get(state)


def launch_array(config, sweep_dir: Path, jobs: list[list[Path]], block: bool,
                 echo=print) -> dict[Path, Status] | None:
    """Submit; with `block`, wait and return the statuses, else return None at once."""
    submitted = submit(sweep_dir, jobs, config.sweep.slurm, f"dynlab-{config.name}")
    ids = [j.job_id for j in submitted]
    echo(f"submitted {len(ids)} array task(s): {', '.join(ids[:4])}{' ...' if len(ids) > 4 else ''}"
         f" (logs: {Path(sweep_dir) / 'slurm'})")
    if block:
        return wait(submitted, jobs, cluster_of(config.sweep.slurm))
    echo(f"follow with: dynlab report {config.name} --runs {sweep_dir}  (unfinished runs show "
         f"as pending/running); afterwards, --resume-sweep {sweep_dir} resumes what was killed "
         f"and retries what failed")
    return None


def wait_for_queue(task_ids: list[str], poll_s: float = 5.0, patience_s: float = 600.0) -> None:
    """Block until Slurm holds none of these tasks; a scheduler silent for `patience_s` is an
    error (transient squeue failures are waited out)."""
    silent_since = None
    while True:
        try:
            states = queue_states(task_ids)
            silent_since = None
        except SlurmError:
            silent_since = silent_since or time.time()
            if time.time() - silent_since > patience_s:
                raise
            states = {t: ("PENDING", "") for t in task_ids}
        if not any(state in QUEUED for state, _ in states.values()):
            return
        time.sleep(poll_s)


def wait(submitted: list, jobs: list[list[Path]], cluster: str) -> dict[Path, Status]:
    """Block until every array task ends; runs whose task ended without a word become killed,
    with Slurm's reason when it gave one."""
    if cluster == "slurm":
        wait_for_queue([j.job_id for j in submitted])
    else:  # submitit's LocalExecutor: its result files say when a task is done
        for job in submitted:
            job.wait()
    statuses = {}
    for job, paths in zip(submitted, jobs):
        for path in paths:
            run = RunDir(path)
            if run.status.active and not still_running(run):
                why = stop_reason(job.job_id, job.paths.stderr) if cluster == "slurm" else None
                run.finish(Status.KILLED, f"slurm task {job.job_id} ended without recording an "
                                          f"ending: {why or f'see {job.paths.stderr}'}")
            statuses[path] = run.status
    return statuses


def active_runs(sweep_dir: Path) -> set[str]:
    """Run ids whose Slurm task (of any launch of this sweep) is still queued or running."""
    jobs = {job["id"]: job["runs"] for launch in read_manifest(sweep_dir).get("launches", [])
            if launch["launcher"] == "slurm" and launch.get("cluster") == "slurm"
            for job in launch["jobs"] if job.get("id")}
    if not jobs or shutil.which("squeue") is None:  # no Slurm here: nothing of it can run
        return set()
    try:
        states = queue_states(list(jobs))
    except SlurmError as exc:  # unknown is not "nothing runs": never start a run twice
        raise SlurmError(f"cannot tell which runs of {sweep_dir} Slurm still holds ({exc}); "
                         f"try again when squeue answers") from None
    held = {task for task, (state, _) in states.items() if state in QUEUED}
    return {run for task in held & set(jobs) for run in jobs[task]}
