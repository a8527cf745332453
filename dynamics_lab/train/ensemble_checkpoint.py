"""Checkpoints of an ensemble: one file that every member's run dir holds, and where a killed
ensemble starts again.

The ensemble's checkpoint (stacked weights, optimizer, each member's minibatch position and
measurement state, RNG) is written atomically into the first member's `last_checkpoint` and
hard-linked into the others' (a copy where links are refused), so each run dir stays whole.
Its stamp names every member with its config identity. A killed ensemble resumes from it when
the same members come back together, each member's metric rows after the checkpoint dropped;
otherwise (another grouping, a missing or foreign checkpoint) the members start afresh, the
reason kept in their meta.json. A single run never loads it: the weights' names differ.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

from dynamics_lab.tracking.checkpoint import CheckpointError, StepCheckpoint, temp_beside
from dynamics_lab.tracking.metrics import MetricsError
from dynamics_lab.tracking.resume import (
    RESUMABLE_KEYS,
    ResumeError,
    check_config,
    checked_step,
    continue_at,
)
from dynamics_lab.tracking.rundir import RunDir, Status, config_hash

STAMP = "EnsembleCheckpoint"  # the callback's state key, where the member list is stamped


def members_stamp(runs: list[RunDir]) -> dict[str, str]:
    """Member run name -> its config identity (resumable keys left out)."""
    return {run.path.name: config_hash(run.config(), without=RESUMABLE_KEYS) for run in runs}


class EnsembleCheckpoint(StepCheckpoint):
    """StepCheckpoint for an ensemble: written once, then linked into every member's run dir."""

    def __init__(self, runs: list[RunDir], every: int, eval_every: int, stop_requested,
                 experiment: str):
        super().__init__(runs[0].last_checkpoint, every, eval_every, stop_requested,
                         {"experiment": experiment, "members": members_stamp(runs)})
        self.runs = runs

    def save(self, trainer: Any) -> None:
        super().save(trainer)
        for run in self.runs[1:]:
            share(self.path, run.last_checkpoint)


def share(source: Path, target: Path) -> None:
    """`target` becomes the file at `source` (a hard link, else a copy), replaced atomically."""
    target.parent.mkdir(exist_ok=True)
    tmp = temp_beside(target)
    try:
        try:
            os.link(source, tmp)
        except OSError:  # a filesystem without hard links
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def fits_members(runs: list[RunDir]):
    """A check that a checkpoint is this ensemble's: the same members with the same configs."""
    expected = members_stamp(runs)

    def fits(checkpoint: dict) -> str | None:
        stamp = (checkpoint.get("callbacks") or {}).get(STAMP) or {}
        got = stamp.get("members")
        if got is None:
            return "it is not an ensemble's checkpoint"
        if got != expected:
            return (f"it belongs to the ensemble of {', '.join(sorted(got))}, not of "
                    f"{', '.join(sorted(expected))}")
        return None

    return fits


def ensemble_start(runs: list[RunDir], resume: bool | None) -> Path | None:
    """Where an ensemble (re)starts: its shared checkpoint when every member stopped midway and
    holds the same sound one (resume None or True); else afresh (resume False, or None with a
    reason recorded). With resume True anything but a checkpoint is a ResumeError."""
    if resume is not False and any(run.status != Status.PENDING for run in runs):
        try:
            step = _checked(runs)
            for run in runs:
                continue_at(run, step)
            return runs[0].last_checkpoint
        except (ResumeError, CheckpointError, MetricsError) as exc:
            if resume:
                raise ResumeError(str(exc)) from None
            reason = str(exc)
    else:
        reason = None
    for run in runs:
        if run.status != Status.PENDING:
            run.reset()
            if reason:
                run.update_meta(restarted=reason)
    return None


def _checked(runs: list[RunDir]) -> int:
    from dynamics_lab.tracking.metrics import read_metrics

    fits, steps = fits_members(runs), set()
    for run in runs:
        if run.status.finished:
            raise ResumeError(f"'{run.path}' already ended ({run.status}); members of an "
                              "ensemble resume together")
        if not run.has_checkpoint():
            raise ResumeError(f"no checkpoint ({run.last_checkpoint} missing)")
        check_config(run)
        if run.metrics_path.exists():
            read_metrics(run.metrics_path)
        steps.add(checked_step(run, run.config()["trainer"]["max_steps"], fits))
    if len(steps) != 1:
        raise ResumeError(f"the members' checkpoints are at different steps ({sorted(steps)})")
    return steps.pop()
