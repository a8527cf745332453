"""`python -m dynamics_lab.worker RUN_DIR [RUN_DIR...]`: execute one job of a sweep.

A job is one run, or several runs trained as one vectorized ensemble. Every launcher (local
subprocesses, Slurm array tasks, W&B agents) ends up in `run_job`, so a retried run behaves the
same everywhere: a finished run is skipped, a killed one resumes from its last checkpoint, and
a failed one (or one without a checkpoint) starts afresh.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dynamics_lab.tracking.rundir import RunDir

FINISHED = ("completed", "diverged")


def start_point(run: RunDir) -> str | None:
    """The checkpoint to resume `run` from, or None for a fresh start (resetting a stopped run)."""
    from dynamics_lab.tracking.resume import ResumeError, prepare_resume

    status = run.meta.get("status")
    if status == "pending":
        return None
    if status in ("killed", "running") and (run.checkpoint_dir / "last.ckpt").is_file():
        try:
            return str(prepare_resume(run.path)[1])
        except ResumeError:
            pass  # an unreadable checkpoint: start over
    run.reset()
    return None


def run_one(run_dir: Path | str, echo=print) -> str:
    """Execute (or resume, or skip) one run; returns its final status."""
    from dynamics_lab.runner import execute
    from dynamics_lab.tracking.resume import still_running

    run = RunDir.open(run_dir)
    meta = run.meta
    if meta.get("status") in FINISHED or still_running(meta):
        return meta["status"]
    result = execute(run, ckpt_path=start_point(run), echo=echo)
    echo(f"{run.path.name}: {result.status}: "
         f"{(result.verdict or {}).get('summary', result.error or '')}")
    return result.status


def run_job(run_dirs: list[str], echo=print) -> dict[str, str]:
    """Run one job (a single run, or an ensemble); returns run dir -> final status."""
    from dynamics_lab.tracking.resume import still_running

    runs = [RunDir.open(d) for d in run_dirs]
    todo = [r for r in runs if r.meta.get("status") not in FINISHED and not still_running(r.meta)]
    statuses = {str(r.path): r.meta["status"] for r in runs if r not in todo}
    if len(todo) == 1 or len(runs) == 1:
        statuses.update({str(r.path): run_one(r.path, echo) for r in todo})
    elif todo:
        from dynamics_lab.sweep.ensemble import execute_ensemble

        for run in todo:
            if run.meta.get("status") != "pending":
                run.reset()  # ensembles do not checkpoint; members restart together
        for result in execute_ensemble(todo, echo=echo):
            statuses[str(result.run_dir)] = result.status
    return statuses


if __name__ == "__main__":
    finished = run_job(sys.argv[1:])
    sys.exit(0 if all(s in FINISHED for s in finished.values()) else 1)
