"""Grokking (Power et al. 2022): the network fits its training set while validation accuracy is
still low, and generalizes long after, for good.

Read from `train/acc` and `val/acc` at their evaluations:
  fit step         first evaluation from which train acc >= train_threshold for `sustain_evals`
                   evaluations in a row AND in at least `fit_hold_fraction` of the evaluations
                   from there to generalization (to the end, without one): a fit lost for most
                   of that time, then regained as the network generalizes, is not the point of
                   overfitting a delay counts from; brief dips, or noise around
                   train_threshold, are not a lost fit
  val acc at fit   the last val acc logged at or before the fit step: at most max_val_at_fit,
                   or at most max_val_at_fit of the way from the first val acc (chance, when
                   step 0 is evaluated) to val_threshold, since chance is 0.5 on a binary task
                   (a network that fits and generalizes together has not grokked)
  generalization   first evaluation from which val acc >= val_threshold for `sustain_evals` in a
                   row AND in at least `hold_fraction` of all later evaluations (a transient spike,
                   or generalization reached and lost, is not grokking)
  delay            generalization step / fit step >= min_delay_ratio, and at least
                   `min_delay_evals` evaluations between them (a ratio of small step numbers,
                   e.g. 60 / 20, says nothing)
How fast val acc climbs is not part of the test: Power et al.'s curves take about a decade of
steps to go from chance to perfect, so a slow, steady rise from the fit that ends long after it
is grokking, and a late rise that stops short of val_threshold (say at 60%) is not.
A run that diverged (a non-finite training loss, `curves.diverged_at`) is judged on its
evaluations before that step, and the reason says so. Undetermined: fewer than `min_evals`
evaluations of either column; no val acc logged at or before the fit; a crossing only in the
last evaluations (not confirmed yet); no generalization by the end of a run that stopped before
min_delay_ratio x the fit step could be seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import Field

from dynamics_lab.phenomena.base import NONNEGATIVE, Detector, Outcome, Verdict, format_step
from dynamics_lab.phenomena.curves import (
    diverged_at,
    first,
    held,
    series,
    sustained,
    value_at,
)
from dynamics_lab.phenomena.dashboard import SWEPT, KeyMetric, Panel, swept_key, verdict_key
from dynamics_lab.registry import PHENOMENA
from dynamics_lab.schema import NamedSection

TRAIN, VAL = "train/acc", "val/acc"


class GrokkingConfig(NamedSection):
    train_threshold: float = Field(0.99, gt=0, le=1)  # "fit" = train acc at or above this
    val_threshold: float = Field(0.95, gt=0, le=1)  # "generalized" = val acc at or above this
    min_delay_ratio: float = Field(2.0, ge=1)
    min_delay_evals: int = Field(5, ge=1)
    max_val_at_fit: float = Field(0.5, gt=0, le=1)
    sustain_evals: int = Field(3, ge=1)
    hold_fraction: float = Field(0.9, gt=0, le=1)
    fit_hold_fraction: float = Field(0.5, gt=0, le=1)
    min_evals: int = Field(10, ge=2)


@dataclass
class GrokkingVerdict(Verdict):
    fit_step: int | None = None
    generalization_step: int | None = None
    delay_ratio: float | None = None
    delay_evals: int | None = None  # val evaluations after the fit step up to generalization
    val_acc_at_fit: float | None = None
    held_fraction: float | None = None  # of val evaluations from generalization on, >= threshold
    final_train_acc: float | None = None
    final_val_acc: float | None = None
    max_val_acc: float | None = None


@PHENOMENA.register("grokking")
class Grokking(Detector):
    """Low val accuracy at the fit, sustained generalization much later (module docstring)."""

    Config = GrokkingConfig
    verdict_type = GrokkingVerdict
    key_metric = KeyMetric("delay_ratio", "maximize")
    field_ranges = {"delay_ratio": NONNEGATIVE}
    panels = (
        Panel("train and validation accuracy", y=(TRAIN, VAL), group_by=(SWEPT,)),
        Panel("train and validation loss", y=("train/loss", "val/loss"), log_y=True),
        Panel("phase diagram: grokking delay over the grid", kind="scatter", x=swept_key(0),
              y=(swept_key(1),), color=verdict_key("delay_ratio"), group_by=()),
    )

    def required(self, experiment: dict) -> list:
        return [TRAIN, VAL]

    def judge(self, metrics: pd.DataFrame, experiment: dict) -> Verdict:
        diverged = diverged_at(metrics)
        if diverged is None:
            return self._judge(metrics)
        verdict = self._judge(metrics[metrics["step"] < diverged])
        note = f"; the run diverged at step {format_step(diverged)} (non-finite training loss)"
        verdict.reason += note
        verdict.summary += note
        return verdict

    def _judge(self, metrics: pd.DataFrame) -> Verdict:
        c = self.config
        t_steps, train = series(metrics, TRAIN)
        v_steps, val = series(metrics, VAL)
        finals = dict(final_train_acc=float(train[-1]) if len(train) else None,
                      final_val_acc=float(val[-1]) if len(val) else None,
                      max_val_acc=float(val.max()) if len(val) else None)
        n = min(len(train), len(val))
        if n < c.min_evals:
            return self.undetermined(f"only {n} evaluations (need {c.min_evals})", **finals)
        last = float(max(t_steps[-1], v_steps[-1]))
        fitted, good = train >= c.train_threshold, val >= c.val_threshold
        gen_i, share = held(good, c.sustain_evals, c.hold_fraction)
        fit_i = self._fit(fitted, t_steps, None if gen_i is None else v_steps[gen_i])
        if fit_i is None:
            return self._no_fit(fitted, t_steps, train, finals)
        fit = float(t_steps[fit_i])
        at_fit = value_at(v_steps, val, fit)
        common = dict(fit_step=int(fit), val_acc_at_fit=at_fit, **finals)
        if at_fit is None:
            return self.undetermined(f"val acc not logged at or before the fit at step "
                                     f"{format_step(fit)}", **common)
        bar = c.max_val_at_fit
        if v_steps[0] < fit:  # the first val acc, before the fit: chance when step 0 is logged
            bar = max(bar, val[0] + c.max_val_at_fit * (c.val_threshold - val[0]))
        if at_fit > bar:
            return self.verdict(
                Outcome.NOT_DETECTED,
                f"val acc was already {at_fit:.3f} (> {bar:.3g}) when the training set was fit "
                f"at step {format_step(fit)}",
                f"no grokking: generalized while fitting (val acc {at_fit:.2f} at the fit)",
                **common)
        if gen_i is None:
            return self._no_generalization(good, v_steps, val, fit, last, common)
        gen = float(v_steps[gen_i])
        ratio = gen / max(fit, 1.0)
        delay_evals = int(np.sum((v_steps > fit) & (v_steps <= gen)))
        fields = dict(generalization_step=int(gen), delay_ratio=ratio, delay_evals=delay_evals,
                      held_fraction=share, **common)
        if ratio >= c.min_delay_ratio and delay_evals >= c.min_delay_evals:
            return self.verdict(
                Outcome.DETECTED,
                f"val acc {at_fit:.2f} at the fit (step {format_step(fit)}), >= "
                f"{c.val_threshold} from step {format_step(gen)} on ({share:.0%} of later "
                f"evaluations): {ratio:.1f}x and {delay_evals} evaluations later",
                f"grokked at step {format_step(gen)}, {ratio:.1f}x after fitting "
                f"(train fit at step {format_step(fit)})", **fields)
        return self.verdict(
            Outcome.NOT_DETECTED,
            f"generalized {ratio:.1f}x and {delay_evals} evaluations after the fit (need "
            f"{c.min_delay_ratio}x and {c.min_delay_evals})",
            f"no grokking: generalized at step {format_step(gen)}, only {ratio:.1f}x after "
            f"fitting at step {format_step(fit)}", **fields)

    def _fit(self, fitted: np.ndarray, steps: np.ndarray, gen: float | None) -> int | None:
        """The fit that holds up to generalization (or, without one, to the end of the run)."""
        c = self.config
        if gen is not None:
            upto = int(np.searchsorted(steps, gen, side="right"))
            i, _ = held(fitted[:upto], c.sustain_evals, c.fit_hold_fraction)
            if i is not None:
                return i
        return held(fitted, c.sustain_evals, c.fit_hold_fraction)[0]

    def _no_fit(self, fitted, t_steps, train, finals) -> Verdict:
        c = self.config
        reached = sustained(fitted, c.sustain_evals)
        if reached is None:
            if fitted[-1]:
                return self.undetermined(f"train acc reached {c.train_threshold} only in the "
                                         "last evaluations", **finals)
            return self.verdict(Outcome.NOT_DETECTED,
                                f"never fit the training set (train acc peaked at "
                                f"{train.max():.3f} < {c.train_threshold})",
                                "no grokking: never fit the training set", **finals)
        share = float(fitted[reached:].mean())
        return self.verdict(
            Outcome.NOT_DETECTED,
            f"train acc reached {c.train_threshold} at step {format_step(t_steps[reached])} "
            f"but did not hold ({share:.0%} of later evaluations, need "
            f"{c.fit_hold_fraction:.0%})", "no grokking: the training set was fit, then lost",
            **finals)

    def _no_generalization(self, good, v_steps, val, fit, last, common) -> Verdict:
        c = self.config
        reached = first(good, int(np.searchsorted(v_steps, fit, side="right")))
        if reached is not None:
            if sustained(good, c.sustain_evals, reached) is None and good[-1]:
                return self.undetermined(f"val acc reached {c.val_threshold} only in the last "
                                         "evaluations", **common)
            share = float(good[reached:].mean())
            return self.verdict(
                Outcome.NOT_DETECTED,
                f"val acc reached {c.val_threshold} at step {format_step(v_steps[reached])} but "
                f"did not hold ({share:.0%} of later evaluations, need {c.hold_fraction:.0%})",
                f"no grokking: generalization at step {format_step(v_steps[reached])} was "
                f"lost", **common)
        later = int(np.sum(v_steps > fit))
        if last < c.min_delay_ratio * fit or later < c.min_delay_evals:
            return self.undetermined(
                f"the run ended at step {format_step(last)}, too soon after the fit at step "
                f"{format_step(fit)} to see a {c.min_delay_ratio}x delay", **common)
        return self.verdict(
            Outcome.NOT_DETECTED,
            f"fit at step {format_step(fit)}, val acc peaked at {val.max():.3f} < "
            f"{c.val_threshold} by step {format_step(last)}",
            f"no grokking: fit at step {format_step(fit)}, but val acc peaked at "
            f"{val.max():.3f} < {c.val_threshold}", **common)

    def figures(self, view) -> list:
        from dynamics_lab.phenomena.grokking.figures import write_figures

        return write_figures(view)

    def sweep_lines(self, view) -> list[str]:
        """When Nanda et al.'s progress measures moved, beside the test loss (when logged)."""
        from dynamics_lab.phenomena.grokking.progress import progress_table

        names = {"fit": "train acc 0.99", "restricted": "restricted loss < chance/2",
                 "excluded": "excluded loss > chance", "test": "test loss < chance/2"}
        lines = []
        for _, row in progress_table(view).iterrows():
            steps = ", ".join(f"{label} at {format_step(row[f'{name}_step'])}"
                              for name, label in names.items() if pd.notna(row[f"{name}_step"]))
            lines.append(f"{row['run_id']}: {steps}")
        return lines
