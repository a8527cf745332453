"""A sweep's runs grouped into jobs: what one worker process trains (one run, or an ensemble)."""

from __future__ import annotations

from pathlib import Path

from dynamics_lab.tracking.rundir import RunDir
from dynamics_lab.train.ensemble import group_key


def group_jobs(run_dirs: list[Path], size: int) -> list[list[Path]]:
    """Jobs of up to `size` compatible runs, in sweep order; a run to resume goes alone."""
    if size <= 1:
        return [[d] for d in run_dirs]
    groups: dict[str, list[Path]] = {}
    jobs: list[list[Path]] = []
    for path in run_dirs:
        run = RunDir(path)
        if run.has_checkpoint() and run.status.resumable:
            jobs.append([path])
            continue
        group = groups.setdefault(group_key(run.config()), [])
        group.append(path)
        if len(group) == size:
            jobs.append(list(group))
            group.clear()
    jobs += [g for g in groups.values() if g]
    return jobs
