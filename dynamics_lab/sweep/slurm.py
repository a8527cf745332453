"""`--launcher slurm`: a sweep's jobs as one submitit job array; each task runs `worker.run_job`.

Settings come from the config's `sweep.slurm` section (or the matching `run` flags). The array
task ids are written to the manifest; statuses live in each run's meta.json, so `dynlab report`
shows finished runs while the rest are still pending. `sweep.slurm.cluster=local` runs the
same array on this machine through submitit's LocalExecutor (what the tests do).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from dynamics_lab.config import SlurmConfig
from dynamics_lab.sweep.manifest import read_manifest, record_launch
from dynamics_lab.tracking.rundir import RunDir

ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED")


class SlurmError(RuntimeError):
    """No cluster to submit to, or a submission that failed."""


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
    from dynamics_lab.worker import run_job

    if not jobs:
        return []
    executor = make_executor(sweep_dir, config, name)
    try:
        submitted = executor.map_array(run_job, [[str(p) for p in job] for job in jobs])
    except Exception as exc:  # sbatch refused (partition, account, ...): say what it said
        raise SlurmError(f"submission failed: {exc}") from None
    record_launch(sweep_dir, "slurm", jobs, [j.job_id for j in submitted],
                  cluster=cluster_of(config))
    return submitted


def launch_array(config, sweep_dir: Path, jobs: list[list[Path]], block: bool,
                 echo=print) -> dict[Path, str] | None:
    """Submit; with `block`, wait and return the statuses, else return None at once."""
    submitted = submit(sweep_dir, jobs, config.sweep.slurm, f"dynlab-{config.name}")
    ids = [j.job_id for j in submitted]
    echo(f"submitted {len(ids)} array task(s): {', '.join(ids[:4])}{' ...' if len(ids) > 4 else ''}"
         f" (logs: {Path(sweep_dir) / 'slurm'})")
    if block:
        return wait(submitted, jobs)
    echo(f"follow with: dynlab report {config.name} --runs {sweep_dir}  (unfinished runs show "
         f"as pending/running); afterwards, --resume-sweep {sweep_dir} retries what failed")
    return None


def wait(submitted: list, jobs: list[list[Path]]) -> dict[Path, str]:
    """Block until every array task ends; runs whose task died without a word become killed."""
    statuses = {}
    for job, paths in zip(submitted, jobs):
        try:
            job.result()
            reason = None
        except Exception as exc:  # the task crashed or timed out; its runs say so below
            first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
            reason = f"slurm task {job.job_id} ended: {first_line}"
        for path in paths:
            run = RunDir(path)
            if run.meta.get("status") in ("pending", "running"):
                run.finish("killed", reason or f"slurm task {job.job_id} ended early")
            statuses[path] = run.meta["status"]
    return statuses


def active_runs(sweep_dir: Path) -> set[str]:
    """Run ids whose Slurm task of the last launch is still queued or running (needs sacct)."""
    launches = [x for x in read_manifest(sweep_dir).get("launches", []) if x["launcher"] == "slurm"]
    if not launches or launches[-1].get("cluster") != "slurm" or shutil.which("sacct") is None:
        return set()
    import submitit

    active: set[str] = set()
    for job in launches[-1]["jobs"]:
        state: str | None = None
        try:
            state = submitit.SlurmJob(Path(sweep_dir) / "slurm" / "%j", job["id"]).state
        except Exception:  # sacct unreachable: assume nothing is running
            state = None
        if state and state.split()[0] in ACTIVE:
            active.update(job["runs"])
    return active
