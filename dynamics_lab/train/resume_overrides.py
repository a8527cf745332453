"""`dynlab resume RUN --set KEY=VALUE`: the changes a resumed run may take (how long it trains,
how often it checkpoints, where), checked together with the checkpoint before any file changes,
then recorded in config.yaml and in meta.json (`resume_overrides`, with the step they start at).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dynamics_lab.config import ExperimentConfig, build_config
from dynamics_lab.overrides import apply_overrides, parse_override
from dynamics_lab.schema import ConfigError
from dynamics_lab.tracking.checkpoint import CheckpointError
from dynamics_lab.tracking.resume import (
    RESUMABLE_KEYS,
    ResumeError,
    check_config,
    checked_step,
    continue_at,
)
from dynamics_lab.tracking.rundir import RunDir, Status


def resumable_pairs(overrides: list[str]) -> list[tuple[str, object]]:
    """The overrides as (key, value), each a key a resumed run may change; else ResumeError."""
    pairs = []
    for text in overrides:
        try:
            key, value = parse_override(text)
        except ConfigError as exc:
            raise ResumeError(str(exc)) from None
        if key not in RESUMABLE_KEYS:
            raise ResumeError(f"--set {key}: a resumed run keeps its config; only "
                              f"{', '.join(RESUMABLE_KEYS)} may change on resume")
        pairs.append((key, value))
    return pairs


def resume_with_overrides(run: RunDir, overrides: list[str],
                          fits: Callable[[ExperimentConfig], Callable] | None = None
                          ) -> tuple[ExperimentConfig, Path]:
    """The run's config with `overrides` applied and the checkpoint to continue from. A run
    that completed may be extended (a larger trainer.max_steps); a diverged one may not."""
    pairs = resumable_pairs(overrides)
    if run.status == Status.DIVERGED:
        raise ResumeError(f"'{run.path}' diverged; continuing it would diverge again")
    if not run.has_checkpoint():
        raise ResumeError(f"'{run.path}' has no checkpoint to resume from "
                          f"({run.last_checkpoint} missing)")
    check_config(run)
    raw = apply_overrides(run.config(), pairs)
    try:
        config = build_config(raw)
    except ConfigError as exc:
        raise ResumeError(str(exc)) from None
    try:
        step = checked_step(run, config.trainer.max_steps, fits(config) if fits else None)
    except CheckpointError as exc:
        raise ResumeError(str(exc)) from None
    if run.status.finished and step >= config.trainer.max_steps:
        raise ResumeError(f"'{run.path}' already ended ({run.status}) at step {step}; to extend "
                          f"it, --set trainer.max_steps=N with N > {step}")
    return config, continue_at(run, step, dict(pairs), raw)
