"""Resuming a stopped run: find its last checkpoint, drop metric rows logged after it."""

from __future__ import annotations

import os
import platform
import random
from pathlib import Path
from typing import Any

import lightning as L

from dynamics_lab.tracking.metrics import MetricsFile
from dynamics_lab.tracking.rundir import RunDir, RunDirError


class ResumeError(ValueError):
    """A run that cannot be resumed: not a run, already finished, or no checkpoint."""


class RandomState(L.Callback):
    """Puts the torch, CUDA, numpy and Python RNG states into checkpoints (Lightning does not),
    and restores them when training restarts, so random measurements resume bit for bit."""

    def __init__(self) -> None:
        self._loaded: dict[str, Any] = {}

    def state_dict(self) -> dict[str, Any]:
        import numpy as np
        import torch

        # Tensors and plain Python values only, so checkpoints load with weights_only=True.
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state = {"torch": torch.get_rng_state(), "python": random.getstate(),
                 "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import numpy as np
        import torch

        state, self._loaded = self._loaded, {}
        if not state:
            return
        torch.set_rng_state(state["torch"])
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class StepCheckpoint(L.Callback):
    """`last.ckpt` every `every` steps and at the last step. On a step with an evaluation it is
    written after that evaluation is logged, so a resumed run neither loses nor repeats a row."""

    def __init__(self, dirpath: Path, every: int, eval_every: int):
        self.path = Path(dirpath) / "last.ckpt"
        self.every, self.eval_every = every, eval_every
        self._saved_step = -1

    def _due(self, trainer: L.Trainer) -> bool:
        step = trainer.global_step
        last = trainer.max_steps is not None and step >= trainer.max_steps
        return step > 0 and step != self._saved_step and (step % self.every == 0 or last)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self._due(trainer) and trainer.global_step % self.eval_every != 0:
            self.save(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and self._due(trainer):
            self.save(trainer)

    def save(self, trainer: L.Trainer) -> None:
        self._saved_step = trainer.global_step
        trainer.save_checkpoint(self.path)  # Lightning writes it atomically


def checkpoint_step(path: Path) -> int:
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])
    except Exception as exc:  # any unreadable checkpoint is the same error to the user
        raise ResumeError(f"checkpoint '{path}' is unreadable: {exc}") from None


def still_running(meta: dict) -> bool:
    """True when meta.json says running and its process is alive on this host."""
    if meta.get("status") != "running" or meta.get("host") != platform.node():
        return False
    try:
        os.kill(int(meta["pid"]), 0)
    except (KeyError, ValueError, ProcessLookupError):
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


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
    if still_running(run.meta):
        raise ResumeError(f"'{run.path}' is still running (pid {run.meta['pid']}); stop it first")
    ckpt = run.checkpoint_dir / "last.ckpt"
    if not ckpt.is_file():
        raise ResumeError(f"'{run.path}' has no checkpoint to resume from ({ckpt} missing)")
    step = checkpoint_step(ckpt)
    if run.metrics_path.exists():
        MetricsFile(run.metrics_path).truncate_after(step)
    run.update_meta(resumed_at_steps=[*run.meta.get("resumed_at_steps", []), step])
    return run, ckpt
