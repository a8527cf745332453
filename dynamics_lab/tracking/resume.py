"""Resuming a stopped run: find its last checkpoint, drop metric rows logged after it."""

from __future__ import annotations

from pathlib import Path

from dynamics_lab.tracking.metrics import MetricsFile
from dynamics_lab.tracking.rundir import RunDir, RunDirError


class ResumeError(ValueError):
    """A run that cannot be resumed: not a run, already finished, or no checkpoint."""


def checkpoint_step(path: Path) -> int:
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])
    except Exception as exc:  # any unreadable checkpoint is the same error to the user
        raise ResumeError(f"checkpoint '{path}' is unreadable: {exc}") from None


def prepare_resume(run_dir: Path | str) -> tuple[RunDir, Path]:
    """The run and the checkpoint to continue from; metrics after that step are removed,
    so the resumed run logs each step exactly once."""
    try:
        run = RunDir.open(run_dir)
    except RunDirError as exc:
        raise ResumeError(str(exc)) from None
    status = run.meta.get("status")
    if status in ("completed", "diverged"):
        raise ResumeError(f"'{run.path}' already ended ({status}); nothing to resume")
    ckpt = run.checkpoint_dir / "last.ckpt"
    if not ckpt.is_file():
        raise ResumeError(f"'{run.path}' has no checkpoint to resume from ({ckpt} missing)")
    step = checkpoint_step(ckpt)
    if run.metrics_path.exists():
        MetricsFile(run.metrics_path).truncate_after(step)
    return run, ckpt
