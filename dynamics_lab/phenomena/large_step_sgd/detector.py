"""SGD with large step sizes learns sparse features (Andriushchenko et al. 2023): with a large step
size SGD bounces across the valley and the training loss stabilizes above what the step size
would otherwise reach; while it is held up there, the features become sparse (fewer ReLUs fire);
once the step size is decayed the loss drops, and the sparse network generalizes better than one
trained with a small step size (that comparison, across a sweep's runs, is compare.py's).

Per run, with T the first step of optim.decay_steps and W = window:
  before       the evaluations of the last W of the large-step phase, [T (1 - W), T)
  after        the evaluations of the last W of the decayed phase
  decay drop   median train/loss before / median after: the stabilization the decay releases
               (a small step size that has converged gains little from decaying)
  active       sparsity/active_fraction (measure/activation_sparsity.py): its first value (at
               init) against its median before the decay; `sparsification` = 1 - before/init
Detected when the decay drop is >= min_decay_drop and the sparsification >= min_sparsification.
Undetermined without a decay step inside the run, or with fewer than min_evals evaluations in
either window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import Field

from dynamics_lab.metric_names import Sparsity
from dynamics_lab.phenomena.base import (
    FRACTION,
    NONNEGATIVE,
    Detector,
    Outcome,
    Verdict,
    format_step,
)
from dynamics_lab.phenomena.curves import series
from dynamics_lab.phenomena.dashboard import SWEPT, KeyMetric, Panel
from dynamics_lab.registry import PHENOMENA
from dynamics_lab.schema import NamedSection

TRAIN, VAL = "train/loss", "val/loss"
ACTIVE, DEAD = Sparsity.ACTIVE_FRACTION, Sparsity.DEAD_FRACTION


class LargeStepSGDConfig(NamedSection):
    window: float = Field(0.3, gt=0, le=1)  # share of each phase the medians are taken over
    min_decay_drop: float = Field(2.0, gt=1)  # stabilized: the loss falls this much after decay
    min_sparsification: float = Field(0.1, gt=0, lt=1)  # relative fall of the active fraction
    min_evals: int = Field(5, ge=1)  # evaluations in each window


@dataclass
class LargeStepSGDVerdict(Verdict):
    lr: float | None = None
    decay_step: int | None = None
    loss_before_decay: float | None = None  # median train loss in the window before the decay
    loss_after_decay: float | None = None  # ... in the last window of the run
    decay_drop: float | None = None
    stabilized: bool | None = None
    active_init: float | None = None
    active_before_decay: float | None = None
    active_final: float | None = None
    sparsification: float | None = None  # 1 - active_before_decay / active_init
    dead_before_decay: float | None = None
    final_train_loss: float | None = None
    final_val_loss: float | None = None


def window_median(steps: np.ndarray, values: np.ndarray, lo: float, hi: float,
                  closed: bool = False) -> tuple[float | None, int]:
    """Median of the values logged in [lo, hi) ([lo, hi] when closed) and how many there were."""
    inside = (steps >= lo) & ((steps <= hi) if closed else (steps < hi))
    return (float(np.median(values[inside])) if inside.any() else None), int(inside.sum())


def _last(metrics: pd.DataFrame, column: str) -> float | None:
    _, values = series(metrics, column)
    return float(values[-1]) if len(values) else None


@PHENOMENA.register("large_step_sgd")
class LargeStepSGD(Detector):
    """Detected when the loss was held up by the step size and the active fraction fell."""

    Config = LargeStepSGDConfig
    verdict_type = LargeStepSGDVerdict
    key_metric = KeyMetric("sparsification", "maximize")
    field_ranges = {"decay_drop": NONNEGATIVE, "active_before_decay": FRACTION,
                    "dead_before_decay": FRACTION, "final_val_loss": NONNEGATIVE}
    panels = (
        Panel("train and test loss (the decay releases the stabilized loss)", y=(TRAIN, VAL),
              log_y=True),
        Panel("fraction of ReLUs active per input", y=(ACTIVE,), group_by=(SWEPT,)),
        Panel("fraction of ReLUs never active", y=(DEAD,), group_by=(SWEPT,)),
    )

    @property
    def interval_fields(self) -> tuple[str, ...]:
        return ("decay_drop", "active_before_decay", "dead_before_decay", "final_val_loss")

    def required(self, experiment: dict) -> list:
        return [TRAIN, ACTIVE]

    def judge(self, metrics: pd.DataFrame, experiment: dict) -> Verdict:
        c = self.config
        optim = experiment.get("optim") or {}
        decays = sorted(optim.get("decay_steps") or [])
        end = float(metrics["step"].max())
        fields = dict(lr=optim.get("lr"), final_train_loss=_last(metrics, TRAIN),
                      final_val_loss=_last(metrics, VAL), active_final=_last(metrics, ACTIVE))
        if not decays:
            return self.undetermined("no step-size decay (optim.decay_steps): the stabilized "
                                     "loss is read off the decay", **fields)
        T = float(decays[0])
        fields["decay_step"] = int(T)
        if T >= end:
            return self.undetermined(f"the decay at step {format_step(T)} comes after the last "
                                     f"step {format_step(end)}", **fields)
        after_start = end - c.window * (end - T)
        steps, loss = series(metrics, TRAIN)
        before, n_before = window_median(steps, loss, T * (1 - c.window), T)
        after, n_after = window_median(steps, loss, max(after_start, T), end, closed=True)
        a_steps, active = series(metrics, ACTIVE)
        active_before, n_active = window_median(a_steps, active, T * (1 - c.window), T)
        d_steps, dead = series(metrics, DEAD)
        dead_before, _ = window_median(d_steps, dead, T * (1 - c.window), T)
        fewest = min(n_before, n_after, n_active)
        if fewest < c.min_evals:
            return self.undetermined(f"only {fewest} evaluations in a window around the decay "
                                     f"(need {c.min_evals})", **fields)
        drop = before / after if after > 0 else float("inf")
        init = float(active[0])
        sparsification = 1 - active_before / init if init > 0 else 0.0
        fields.update(loss_before_decay=before, loss_after_decay=after, decay_drop=drop,
                      stabilized=drop >= c.min_decay_drop, active_init=init,
                      active_before_decay=active_before, sparsification=sparsification,
                      dead_before_decay=dead_before)
        dead_text = f", {dead_before:.0%} of units dead" if dead_before is not None else ""
        test = (f"; test loss {fields['final_val_loss']:.3g}"
                if fields["final_val_loss"] is not None else "")
        summary = (f"lr {fields['lr']:g}: loss {before:.3g} before the decay at "
                   f"{format_step(T)}, {after:.3g} after ({drop:.1f}x); active fraction "
                   f"{init:.2f} -> {active_before:.2f}{dead_text}{test}")
        if drop < c.min_decay_drop:
            return self.verdict(Outcome.NOT_DETECTED, f"no loss stabilization: the loss fell "
                                f"only {drop:.2f}x after the decay (need {c.min_decay_drop}x)",
                                summary, **fields)
        if sparsification < c.min_sparsification:
            return self.verdict(Outcome.NOT_DETECTED, f"the loss stabilized ({drop:.1f}x) but "
                                f"the active fraction fell only {sparsification:.0%} (need "
                                f"{c.min_sparsification:.0%})", summary, **fields)
        return self.verdict(Outcome.DETECTED, f"loss stabilized ({drop:.1f}x above its "
                            f"post-decay level) while the active fraction fell "
                            f"{sparsification:.0%}", summary, **fields)

    def figures(self, view) -> list:
        from dynamics_lab.phenomena.large_step_sgd.figures import write_figures

        return write_figures(view)
