"""Several optimizer steps per Lightning step, up to the next step anything looks at.

Lightning's machinery around one training step (loop bookkeeping, hooks, closures) costs about
0.3 ms, more than a whole step of a toy model. `FusedSteps` runs a block of k optimizer steps in
one Lightning step (manual optimization, batches pulled from `dataloader_iter`), where k reaches
up to the next step at which something observes training: an evaluation (`val_check_interval`),
a measurement (its `Schedule`), a checkpoint (`StepCheckpoint.every`), the last step. A stop
request (Ctrl-C) ends a block after the step under way, where a one-step run would have stopped.
Within a block each step still logs its own batch loss at its own step, and Lightning's counters
advance by one batch and one optimizer step per step, so `global_step`, evaluations, checkpoints
and resumes read exactly as if every step had been its own Lightning step.

Callbacks that watch every step's backward pass or optimizer step, or other callbacks with
per-batch hooks that say nothing of when they look, get one step per Lightning step (and
Lightning's own backward and optimizer-step hooks). A callback may instead define
`observes(step) -> bool`: the steps after which it must see the trainer.

No public Lightning hook advances the loop's counters or prepares a batch outside its loop, so
`StepPlan` and `prepared` use Lightning internals (`_batches_that_stepped`,
`_on_before_batch_transfer`): pyproject.toml bounds Lightning to the tested release and
tests/test_lightning_internals.py fails naming the attribute that moved.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch

from dynamics_lab.tracking.checkpoint import RandomState, StepCheckpoint
from dynamics_lab.tracking.progress import ProgressLine
from dynamics_lab.train.stopping import StopRequest

MAX_FUSED = 256  # bounds how long one Lightning step (and a progress line's silence) lasts
BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end")
UPDATE_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step",
                "on_before_zero_grad")
QUIET = (RandomState, StopRequest, ProgressLine)  # per-batch hooks fine once per block


def measurement_types() -> tuple[type, ...]:
    """(Measurement, Schedule) once measure/ is imported, else () (no instance can exist then):
    a run that measures nothing does not pay for importing every measurement."""
    base = sys.modules.get("dynamics_lab.measure.base")
    return (base.Measurement, base.Schedule) if base is not None else ()


def overrides(callback: L.Callback, hooks: tuple[str, ...]) -> bool:
    return any(getattr(type(callback), h) is not getattr(L.Callback, h) for h in hooks)


def periodic(every: int) -> Callable[[int], int]:
    return lambda step: (step // every + 1) * every


def scanning(due: Callable[[int], bool], horizon: int) -> Callable[[int], int]:
    """The next step after `step` where `due` holds, looking at most `horizon` steps ahead."""
    def next_due(step: int) -> int:
        for t in range(step + 1, step + horizon):
            if due(t):
                return t
        return step + horizon
    return next_due


def schedule_steps(schedule: Callable[[int], bool], horizon: int) -> Callable[[int], int]:
    types = measurement_types()
    if types and isinstance(schedule, types[1]) and not schedule.log_spaced:
        return periodic(schedule.every)
    return scanning(schedule, horizon)


def fusing_off(watching: list[str], module_hooks: list[str], blind: list[str]) -> str | None:
    """Why every step is its own Lightning step (None when nothing forces it), in one line."""
    if watching:
        return (f"one optimizer step per Lightning step: {', '.join(watching)} watches every "
                "backward pass or optimizer step")
    if module_hooks:
        return (f"one optimizer step per Lightning step: the module overrides "
                f"{', '.join(module_hooks)}")
    if blind:
        return (f"one optimizer step per Lightning step: {', '.join(blind)} has per-batch hooks "
                "but no observes(step); define observes(step) -> bool (the steps after which "
                "it must see the trainer) to let steps fuse")
    return None


class StepPlan:
    """How many optimizer steps the Lightning step starting at a given step may run, read once
    from the trainer (its validation interval, max_steps and callbacks) at the start of fit."""

    def __init__(self, trainer: L.Trainer, max_fused: int = MAX_FUSED):
        self.trainer, callbacks = trainer, trainer.callbacks
        measurement = measurement_types()[:1]
        module = trainer.lightning_module
        watching = [type(cb).__name__ for cb in callbacks if overrides(cb, UPDATE_HOOKS)]
        module_hooks = [h for h in UPDATE_HOOKS if h != "on_before_optimizer_step"  # called here
                        and getattr(type(module), h) is not getattr(L.LightningModule, h)]
        self.hooked = bool(watching or module_hooks)
        blind = [type(cb).__name__ for cb in callbacks
                 if overrides(cb, BATCH_HOOKS) and not isinstance(cb, QUIET)
                 and not hasattr(cb, "observes")
                 and not isinstance(cb, (*measurement, StepCheckpoint))]
        finite_epoch = trainer.num_training_batches != math.inf
        self.max_fused = 1 if self.hooked or blind or finite_epoch else max_fused
        self.reason = fusing_off(watching, module_hooks, blind) if max_fused > 1 else None
        if self.reason:
            warnings.warn(self.reason, stacklevel=2)
        self.max_steps = trainer.max_steps if trainer.max_steps >= 0 else math.inf
        self.next_due: list[Callable[[int], int]] = []
        interval = trainer.val_check_batch
        if trainer.check_val_every_n_epoch is None and interval not in (None, math.inf):
            self.next_due.append(periodic(int(interval)))
        self.stop_checks: list[Callable[[], bool]] = []
        for cb in callbacks:
            if isinstance(cb, measurement):
                self.next_due.append(schedule_steps(cb.schedule, self.max_fused))
            elif isinstance(cb, StepCheckpoint):
                self.next_due.append(periodic(cb.every))
                self.stop_checks.append(cb.stop_requested)
            elif hasattr(cb, "observes"):
                self.next_due.append(scanning(cb.observes, self.max_fused))
        loop = trainer.fit_loop.epoch_loop
        self._loop, self._batches = loop, loop.batch_progress
        self._updates = loop.manual_optimization.optim_step_progress

    def steps_from(self, step: int) -> int:
        """Optimizer steps the Lightning step starting at `step` runs (at least one)."""
        end = min(step + self.max_fused, self.max_steps)
        for next_due in self.next_due:
            end = min(end, next_due(step))
        return max(1, end - step)

    def stop_requested(self) -> bool:
        return any(check() for check in self.stop_checks)

    def count_batch(self) -> None:
        """One more batch in this Lightning step: Lightning counted only the first."""
        self._batches.increment_by(1)
        self._loop._batches_that_stepped += 1

    def count_update(self) -> None:
        """One optimizer step taken outside Lightning's optimizer wrapper."""
        self._updates.increment_by(1)


class FusedSteps(L.LightningModule):
    """Base module: a Lightning step runs the optimizer steps its `StepPlan` allows.

    A subclass implements `step_loss(batch, step)`: the loss whose gradient makes update `step`,
    after logging what that step logs; None takes no step and ends the block (a diverged run
    also sets `trainer.should_stop`). `max_fused=1` gives one optimizer step per Lightning step.
    """

    def __init__(self, max_fused: int = MAX_FUSED):
        super().__init__()
        self.automatic_optimization = False
        self.max_fused = max_fused
        self.plan: StepPlan | None = None
        self._raw: tuple = ()  # the last batch as the stream gave it, and ready for the model
        self._ready: Any = None

    def step_loss(self, batch: Any, step: int) -> torch.Tensor | None:
        raise TypeError(f"{type(self).__name__} must define step_loss()")

    def on_train_start(self) -> None:
        self.plan = StepPlan(self.trainer, self.max_fused)

    def training_step(self, dataloader_iter: Iterator) -> None:
        if self.plan is None or self.plan.trainer is not self.trainer:  # on_train_start overridden
            self.plan = StepPlan(self.trainer, self.max_fused)
        plan, optimizer = self.plan, self.optimizers()
        raw = optimizer.optimizer
        own_hook = type(self).on_before_optimizer_step is not FusedSteps.on_before_optimizer_step
        for i in range(plan.steps_from(self.global_step)):
            if i:
                if plan.stop_requested():
                    return
                plan.count_batch()
            loss = self.step_loss(self.prepared(next(dataloader_iter)[0]), self.global_step)
            if loss is None:
                return
            if plan.hooked:  # every hook automatic optimization runs, through Lightning's calls
                for callback in self.trainer.callbacks:
                    callback.on_before_zero_grad(self.trainer, self, raw)
                self.on_before_zero_grad(raw)
                raw.zero_grad(set_to_none=True)
                self.manual_backward(loss)
                if not self._updated(optimizer.step):
                    return
                continue
            raw.zero_grad(set_to_none=True)
            loss.backward()
            if own_hook:
                self.on_before_optimizer_step(raw)
            if not self._updated(raw.step):
                return
            plan.count_update()

    def _updated(self, step: Callable[[], Any]) -> bool:
        """Run one optimizer step; False when the update overflowed the parameters' dtype (a
        step size near the float maximum), which is a blow-up like a non-finite loss."""
        try:
            step()
        except RuntimeError as exc:
            if "without overflow" not in str(exc):
                raise
            self.on_update_overflow()
            return False
        return True

    def on_update_overflow(self) -> None:
        """The update overflowed: stop training (subclasses record the divergence)."""
        self.trainer.should_stop = True

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A checkpoint written under automatic optimization counted its steps there; without
        # this, global_step would restart at 0 with the weights of a later step.
        loops = checkpoint.get("loops", {}).get("fit_loop", {})
        manual = loops.get("epoch_loop.manual_optimization.optim_step_progress")
        auto = loops.get("epoch_loop.automatic_optimization.optim_progress")
        if manual and auto and not manual["total"]["completed"]:
            steps = auto["optimizer"]["step"]
            manual["total"], manual["current"] = dict(steps["total"]), dict(steps["current"])

    def prepared(self, batch: Any) -> Any:
        """What Lightning would hand training_step: input precision, transfer hooks, device.
        A full-batch stream repeats the same tensors: they are prepared once."""
        parts = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
        if len(parts) == len(self._raw) and all(a is b for a, b in zip(parts, self._raw)):
            return self._ready
        trainer = self.trainer
        ready = trainer.precision_plugin.convert_input(batch)
        ready = self._on_before_batch_transfer(ready, dataloader_idx=0)
        self._ready = trainer.strategy.batch_to_device(ready, dataloader_idx=0)
        self._raw = parts
        return self._ready
