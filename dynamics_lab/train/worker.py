"""`python -m dynamics_lab.train.worker RUN_DIR [RUN_DIR...]`: execute one job of a sweep.

A job is one run, or several runs trained as one vectorized ensemble. Every launcher (local
subprocesses, Slurm array tasks, W&B agents) ends up in `run_job`, so a retried run behaves the
same everywhere: a finished run is skipped, a killed or failed one resumes from its last sound
checkpoint (only judged again when that is at the last step), and one without a usable
checkpoint starts afresh, saying why. A run another live process holds is left alone.
Ctrl-C, SIGTERM or SIGHUP stops the job with its runs `killed` (exit status 130).
"""

from __future__ import annotations

import sys
from pathlib import Path

from dynamics_lab.tracking.rundir import RunDir, RunDirError, Status

INTERRUPTED = 130  # exit status of a job stopped by Ctrl-C or SIGTERM, as shells report SIGINT


def skipped(run: RunDir) -> bool:
    """Finished, or held by a live process: leave it alone."""
    from dynamics_lab.tracking.resume import still_running

    try:
        return run.status.finished or still_running(run)
    except RunDirError:  # meta.json lost or unreadable: the lifecycle recovers or says why
        return False


def refused(runs: list[RunDir], exc: RunDirError, echo=print) -> dict[str, Status]:
    """Runs the lifecycle would not start: held elsewhere or already finished are left as they
    are; anything else (say a metrics.csv that does not parse) fails them with that line."""
    from dynamics_lab.tracking.lock import LockedError

    statuses = {}
    for run in runs:
        try:
            status = run.status
            if not isinstance(exc, LockedError) and not status.finished:
                status = run.finish(Status.FAILED, str(exc))["status"]
        except RunDirError:  # not even a meta.json to record it in
            status = Status.FAILED
        statuses[str(run.path)] = Status(status)
        echo(f"{run.path.name}: {status}: {exc}")
    return statuses


def run_job(run_dirs: list[str], echo=print) -> dict[str, Status]:
    """Run one job (a single run, or an ensemble); returns run dir -> final status."""
    from dynamics_lab.train.ensemble import execute_ensemble
    from dynamics_lab.train.runner import execute

    runs = [RunDir(d) for d in run_dirs]
    todo = [r for r in runs if not skipped(r)]
    statuses = {str(r.path): r.status for r in runs if r not in todo}
    try:
        if len(todo) == 1:
            results = [execute(todo[0], resume=None, echo=echo)]
        else:
            results = execute_ensemble(todo, echo=echo) if todo else []
    except RunDirError as exc:
        return {**statuses, **refused(todo, exc, echo)}
    for result in results:
        echo(result.line())
        statuses[str(result.run_dir)] = result.status
    return statuses


def run_one(run_dir: Path | str, echo=print) -> Status:
    """Execute (or resume, or skip) one run; returns its final status."""
    return run_job([str(run_dir)], echo)[str(Path(run_dir))]


def exit_status(statuses: dict[str, Status]) -> int:
    """0 when every run finished, 130 when the job was interrupted, else 1."""
    if any(s == Status.KILLED for s in statuses.values()):
        return INTERRUPTED
    return 0 if all(s.finished for s in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(exit_status(run_job(sys.argv[1:])))
