"""Checkpoints: what goes into one (RNG states, the run it belongs to, written at safe steps),
writing one atomically inside the run dir, and loading one without executing code
(`weights_only` with an allow-list of the plain types our checkpoints hold)."""

from __future__ import annotations

import contextlib
import io
import os
import random
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded safely: unreadable, truncated, or holding code."""


class Interrupted(BaseException):
    """Training stopped on request (Ctrl-C, SIGTERM). A BaseException, so no `except Exception`
    on the way (a failing measurement's guard, say) swallows it."""


def safe_globals() -> list:
    """Non-tensor types a checkpoint may hold besides dicts, lists, tuples, numbers and strings:
    numpy arrays and scalars of plain dtypes (a callback's numpy RNG state, say)."""
    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    codes = "?bhilqBHILQefdgFD"  # bool, ints, uints, floats, complex: no object dtype
    return [_reconstruct, scalar, np.ndarray, np.dtype,
            *{type(np.dtype(c)) for c in codes}]


@contextlib.contextmanager
def allowing_safe_globals() -> Iterator[None]:
    """Let every `torch.load(weights_only=True)` inside (Lightning's too) accept `safe_globals`."""
    import torch

    allow = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    with allow(safe_globals()) if allow else contextlib.nullcontext():
        yield


def load_checkpoint(path: Path) -> dict:
    """The checkpoint at `path`, loaded with `weights_only=True`: a pickle that names any callable
    outside the allow-list is refused before anything in it runs."""
    import torch

    try:
        with allowing_safe_globals():
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable checkpoint is the same error to the user
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Unsupported global" in str(exc) or "weights_only" in str(exc):
            reason = "it holds objects other than tensors and plain values (refusing to " \
                     "unpickle code)"
        raise CheckpointError(f"checkpoint '{path}' is unreadable: {reason}") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("global_step"), int):
        raise CheckpointError(f"checkpoint '{path}' is unreadable: not a Lightning checkpoint "
                              "(no global_step)")
    return checkpoint


def checkpoint_step(path: Path) -> int:
    """The optimizer step the checkpoint at `path` was written after."""
    return int(load_checkpoint(path)["global_step"])


TEMP_SUFFIX = ".tmp"
CHUNK = 1 << 22


def temp_beside(path: Path) -> Path:
    """A fresh temp name in `path`'s directory (so a rename onto `path` stays on one
    filesystem), which `clear_partial_writes` finds if a writer is killed."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a reader (or a crash) sees the old file or the new one,
    never a part: a temp file beside it (same directory, so same filesystem: never the $TMPDIR
    a cross-filesystem rename would need to copy from), fsynced, then os.replace. On any error
    the temp file is removed and the old file is untouched."""
    tmp = temp_beside(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view[:CHUNK]):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # the rename itself survives a power loss
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def clear_partial_writes(directory: Path) -> list[Path]:
    """Remove temp files a killed `write_atomically` left in `directory`; returns them."""
    stray = [p for p in Path(directory).glob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for path in stray:
        path.unlink(missing_ok=True)
    return stray


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer with `write_atomically`: Lightning's own goes through a
    temp file in $TMPDIR, and where that is another filesystem (a node-local /tmp, run dirs on
    shared storage) the final step is a copy into the open, truncated checkpoint."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        import torch

        if storage_options is not None:
            raise TypeError("storage_options are not supported by AtomicCheckpointIO")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        path = Path(path)
        path.parent.mkdir(exist_ok=True)  # not parents: a deleted run dir stays deleted
        write_atomically(path, buffer.getbuffer())


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
    """The run's last checkpoint (`RunDir.last_checkpoint`) every `every` steps and at the last
    step. On a step with an evaluation it is written after that evaluation is logged, so a
    resumed run neither loses nor repeats a row.

    Those are also the only points where training stops on request: when `stop_requested()`
    turns true, the next one writes the checkpoint (if a step was taken) and raises Interrupted.
    """

    def __init__(self, path: Path, every: int, eval_every: int,
                 stop_requested: Callable[[], bool] = lambda: False,
                 stamp: dict[str, str] | None = None):
        self.path = Path(path)
        self.every, self.eval_every = every, eval_every
        self.stop_requested = stop_requested
        self.stamp = stamp or {}  # the run it belongs to: checked before a resume loads it
        self._saved_step = -1

    def state_dict(self) -> dict[str, Any]:
        return dict(self.stamp)

    def _due(self, trainer: L.Trainer) -> bool:
        step = trainer.global_step
        last = trainer.max_steps is not None and step >= trainer.max_steps
        return step > 0 and step != self._saved_step and (step % self.every == 0 or last)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step % self.eval_every != 0:
            self._safe_point(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._safe_point(trainer)

    def _safe_point(self, trainer: L.Trainer) -> None:
        stop = self.stop_requested()
        step = trainer.global_step
        if self._due(trainer) or (stop and step > 0 and step != self._saved_step):
            self.save(trainer)
        if stop:
            raise Interrupted(f"stopped at step {step}, checkpoint written" if step > 0
                              else "stopped before the first step")

    def save(self, trainer: L.Trainer) -> None:
        """Write the checkpoint (atomically, with AtomicCheckpointIO); a failed write (a full
        disk) is a one-line CheckpointError and the previous checkpoint stays."""
        try:
            trainer.save_checkpoint(self.path)
        except OSError as exc:
            kept = (f"the one from step {self._saved_step} is kept" if self._saved_step > 0
                    else "the previous one is kept" if self.path.exists() else "none was before")
            raise CheckpointError(f"checkpoint at step {trainer.global_step} not written to "
                                  f"'{self.path}': {exc.strerror or exc}; {kept}") from None
        self._saved_step = trainer.global_step
