"""Where a run (re)starts: from its last checkpoint, with the metric rows logged after that
checkpoint dropped, or afresh; and a lost meta.json rebuilt from config.yaml."""

from __future__ import annotations

from pathlib import Path

from dynamics_lab.tracking.rundir import RunDir, RunDirError, Status, now, write_json


class ResumeError(RunDirError):
    """A run that cannot be resumed: already finished, no checkpoint, or an unsafe one."""


def still_running(run: RunDir) -> bool:
    """A live process holds the run's lock: leave the run alone."""
    from dynamics_lab.tracking.lock import holder

    return holder(run.path) is not None


def recover_meta(run: RunDir, ours: bool = False) -> bool:
    """Rebuild a lost meta.json from config.yaml (status killed, so a checkpoint is resumed), for
    a run a sweep lists (`ours`) or one that left a checkpoint or metrics. True when rebuilt;
    RunDirError when the directory cannot be recovered."""
    if run.meta_path.exists():
        return False
    left = run.has_checkpoint() or run.metrics_path.is_file()
    if not run.config_path.is_file() or not (ours or left):
        raise RunDirError(f"'{run.path}' is not a dynamics_lab run (no config.yaml/meta.json)")
    seed = run.config().get("seed", 0)
    write_json(run.meta_path, {"status": Status.KILLED, "seed": seed, "created": now(),
                               "recovered": now(), "error": "meta.json was lost; rebuilt"})
    return True


def from_checkpoint(run: RunDir) -> Path:
    """The checkpoint to continue `run` from, checked to load safely; only then are the metric
    rows after its step dropped. A metrics.csv that cannot be parsed is a MetricsError and is
    left as it is."""
    from dynamics_lab.tracking.checkpoint import CheckpointError, checkpoint_step
    from dynamics_lab.tracking.metrics import MetricsFile

    if run.status.finished:
        raise ResumeError(f"'{run.path}' already ended ({run.status}); nothing to resume")
    if not run.has_checkpoint():
        raise ResumeError(f"'{run.path}' has no checkpoint to resume from "
                          f"({run.last_checkpoint} missing)")
    try:
        step = checkpoint_step(run.last_checkpoint)
    except CheckpointError as exc:
        raise ResumeError(str(exc)) from None
    if run.metrics_path.exists():
        MetricsFile(run.metrics_path).truncate_after(step)
    run.update_meta(resumed_at_steps=[*run.meta.get("resumed_at_steps", []), step])
    return run.last_checkpoint


def start_point(run: RunDir, required: bool = False) -> Path | None:
    """Where `run` starts: its checkpoint when it stopped midway and has a sound one; else afresh
    (a stopped run is reset first). With `required`, anything but a checkpoint is a ResumeError."""
    if required or run.status.finished:
        return from_checkpoint(run)
    if run.status == Status.PENDING:
        return None
    if run.status.resumable and run.has_checkpoint():
        try:
            return from_checkpoint(run)
        except ResumeError:
            pass  # an unreadable or unsafe checkpoint: start over (reset deletes it)
    run.reset()
    return None
