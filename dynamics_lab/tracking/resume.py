"""Where a run (re)starts: from its last checkpoint, checked to belong to the run before any file
changes (then the metric rows logged after it are dropped), or afresh, saying why; and a lost
or mangled meta.json rebuilt from config.yaml."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import yaml

from dynamics_lab.tracking.rundir import (
    RunDir,
    RunDirError,
    Status,
    config_hash,
    now,
    read_json,
    write_json,
)

# What `dynlab resume RUN --set KEY=VALUE` may change: how long a run trains, how often it
# checkpoints, where. Anything else would make one run of two configs.
RESUMABLE_KEYS = ("trainer.max_steps", "trainer.checkpoint_every", "trainer.device")
STAMP = "StepCheckpoint"  # the callback whose state names the run a checkpoint belongs to


class ResumeError(RunDirError):
    """A run that cannot be resumed: already finished, no checkpoint, or an unsafe one."""


def still_running(run: RunDir) -> bool:
    """A live process holds the run's lock: leave the run alone."""
    from dynamics_lab.tracking.lock import holder

    return holder(run.path) is not None


def recover_meta(run: RunDir, ours: bool = False) -> bool:
    """Rebuild a lost meta.json from config.yaml (status killed, so a checkpoint is resumed), for
    a run a sweep lists (`ours`) or one that left a checkpoint or metrics. A mangled one (not
    JSON, `[]`, `null`) is set aside as meta.json.corrupt and rebuilt for a sweep's run; for a
    single run it is a RunDirError that says how to rebuild it. True when rebuilt."""
    if run.meta_path.exists():
        try:
            read_json(run.meta_path)
            return False
        except RunDirError as exc:
            if not ours:
                raise RunDirError(f"{exc}; delete it to rebuild it from config.yaml") from None
            os.replace(run.meta_path, run.path / "meta.json.corrupt")
    left = run.has_checkpoint() or run.metrics_path.is_file()
    if not run.config_path.is_file() or not (ours or left):
        raise RunDirError(f"'{run.path}' is not a dynamics_lab run (no config.yaml/meta.json)")
    config = run.config()
    write_json(run.meta_path, {"status": Status.KILLED, "seed": config.get("seed", 0),
                               "created": now(), "recovered": now(),
                               "config_hash": config_hash(config),
                               "error": "meta.json was lost; rebuilt"})
    return True


def check_config(run: RunDir) -> None:
    """config.yaml is the one the run started with (its hash in meta.json); else ResumeError."""
    stored = run.meta.get("config_hash")
    if stored and config_hash(run.config()) != stored:
        raise ResumeError(
            f"'{run.config_path}' changed since the run started, and a resumed run keeps its "
            f"config: undo the edit, or change only {', '.join(RESUMABLE_KEYS)} with "
            f"`dynlab resume {run.path} --set KEY=VALUE`")


def checked_step(run: RunDir, max_steps: int,
                 fits: Callable[[dict], str | None] | None = None) -> int:
    """The step of the run's checkpoint, once it is known to load safely, to belong to this run
    (the identity stamped in it), to be within `max_steps` and to `fits` the model (None, or
    why not). CheckpointError, naming the file, otherwise; nothing is written."""
    from dynamics_lab.tracking.checkpoint import CheckpointError, load_checkpoint

    path = run.last_checkpoint
    checkpoint = load_checkpoint(path)
    step = int(checkpoint["global_step"])
    stamp = (checkpoint.get("callbacks") or {}).get(STAMP) or {}
    identity = config_hash(run.config(), without=RESUMABLE_KEYS)
    if stamp.get("identity") not in (None, identity):
        raise CheckpointError(f"checkpoint '{path}' was written by another run (experiment "
                              f"{stamp.get('experiment')!r}, config {stamp['identity']}) than "
                              f"this one (config {identity}); refusing to mix them")
    if step > max_steps:
        raise CheckpointError(f"checkpoint '{path}' is at step {step}, past this run's "
                              f"trainer.max_steps={max_steps}")
    why = fits(checkpoint) if fits else None
    if why:
        raise CheckpointError(f"checkpoint '{path}' does not fit this run's model: {why}")
    return step


def continue_at(run: RunDir, step: int, overrides: dict | None = None,
                config: dict | None = None) -> Path:
    """Everything checked: drop the metric rows after `step` (a metrics.csv that does not parse
    is a MetricsError and stays as it is), then record the resume and any overrides (`config`
    is config.yaml with them applied)."""
    from dynamics_lab.tracking.metrics import MetricsFile

    if run.metrics_path.exists():
        MetricsFile(run.metrics_path).truncate_after(step)
    meta = run.meta
    fields = {"resumed_at_steps": [*meta.get("resumed_at_steps", []), step]}
    if overrides:
        tmp = run.config_path.with_name(f".config.yaml.{os.getpid()}.tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        os.replace(tmp, run.config_path)
        fields.update(config_hash=config_hash(run.config()), resume_overrides=[
            *meta.get("resume_overrides", []), {"at_step": step, "set": overrides}])
    run.update_meta(**fields)
    return run.last_checkpoint


def from_checkpoint(run: RunDir, max_steps: int | None = None,
                    fits: Callable[[dict], str | None] | None = None) -> Path:
    """The checkpoint to continue `run` from, checked (config.yaml unchanged, the checkpoint
    loads, belongs here and fits) before the metric rows after its step are dropped."""
    from dynamics_lab.tracking.checkpoint import CheckpointError
    from dynamics_lab.tracking.metrics import read_metrics

    if run.status.finished:
        raise ResumeError(f"'{run.path}' already ended ({run.status}); nothing to resume")
    if not run.has_checkpoint():
        raise ResumeError(f"'{run.path}' has no checkpoint to resume from "
                          f"({run.last_checkpoint} missing)")
    check_config(run)
    if run.metrics_path.exists():
        read_metrics(run.metrics_path)  # a MetricsError naming the line, before anything else
    limit = max_steps if max_steps is not None else run.config()["trainer"]["max_steps"]
    try:
        step = checked_step(run, limit, fits)
    except CheckpointError as exc:
        raise ResumeError(str(exc)) from None
    return continue_at(run, step)


def start_point(run: RunDir, required: bool = False,
                fits: Callable[[dict], str | None] | None = None) -> Path | None:
    """Where `run` starts: its checkpoint when it stopped midway (killed, or failed: a full disk,
    a crashed detector) and has a sound one; else afresh, the reason kept in meta.json as
    `restarted`. A changed config.yaml is refused rather than started over. With `required`,
    anything but a checkpoint is a ResumeError."""
    if required or run.status.finished:
        return from_checkpoint(run, fits=fits)
    if run.status == Status.PENDING:
        return None
    reason = f"no checkpoint ({run.last_checkpoint.name} missing)"
    if run.has_checkpoint():
        check_config(run)
        try:
            return from_checkpoint(run, fits=fits)
        except ResumeError as exc:  # unreadable, unsafe or foreign: start over (reset deletes it)
            reason = str(exc)
    run.reset()
    run.update_meta(restarted=reason)
    return None
