"""Stepwise learning (Saxe et al. 2014): from small init, a linear network learns the teacher's
modes one at a time, each after a plateau, in a sigmoidal rise.

Spectral verdict (from `modes/strength_i`, measure/modes.py, smoothed by a running median of
five samples): mode i's rise runs from rise_low to rise_high of its target s_i, and its step is
where it crosses learned_fraction. A rise is judged by its shape: a sigmoid from a small init is
steep next to the plateau before it, (t90 - t10) / t50 well below 1, while an exponential
saturation s (1 - exp(-r t)) has (t90 - t10) / t50 = 3.2 whatever its rate. Rises that overlap
form one step: modes of equal strength are learned together (Saxe et al.), a staircase with
fewer, taller steps. The run is stepwise when its learned modes rise in >= 2 separate steps,
every learned rise is sigmoidal ((t90 - t10) / t50 <= max_rise_shape) and every learned mode
stays learned (a mode that rises, then falls back below learned_fraction by the end, was not
learned for good). Fewer than two modes learned while some are still unlearned is undetermined
(the run stopped too early). Without a known teacher, a mode's target is the largest value its
smoothed strength reached.

A second opinion reads only the loss (plateaus.py), preferring the full-split `train/loss` when it
has at least min_loss_points values (else `train/batch_loss`, the same loss under full-batch
training); the two counts are reported side by side (`spectral_steps`, `loss_steps`, `agree`),
never reconciled. Without mode metrics the loss alone decides: a staircase of >= 2 drops.
Theory beside the observed times: theory.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import Field

from dynamics_lab.metric_names import Modes
from dynamics_lab.phenomena.base import NONNEGATIVE, Detector, Outcome, Verdict, format_step
from dynamics_lab.phenomena.curves import rolling_median, series
from dynamics_lab.phenomena.dashboard import SWEPT, KeyMetric, Panel
from dynamics_lab.phenomena.stepwise.plateaus import loss_steps
from dynamics_lab.phenomena.stepwise.theory import theory_for
from dynamics_lab.registry import PHENOMENA
from dynamics_lab.schema import NamedSection

STRENGTH, SV = Modes.STRENGTH, Modes.SINGULAR_VALUE
LOSSES = ("train/loss", "train/batch_loss")


class StepwiseConfig(NamedSection):
    learned_fraction: float = Field(0.5, gt=0, lt=1)  # a mode's step: strength reaches this * s
    rise_low: float = Field(0.1, gt=0, lt=1)  # its rise window runs from rise_low * s ...
    rise_high: float = Field(0.9, gt=0, lt=1)  # ... to rise_high * s
    max_rise_shape: float = Field(1.0, gt=0)  # sigmoidal: (t_high - t_low) / t_step <= this
    min_slope: float = Field(1.0, gt=0)  # loss detector: drop = -dlogL/dlog(step) above this
    min_drop: float = Field(1.25, gt=1)  # loss detector: a drop shrinks the loss at least this
    min_gap: float = Field(0.05, ge=0)  # loss detector: plateaus shorter (decades) merge drops
    min_share: float = Field(1e-3, ge=0, lt=1)  # loss detector: least share of the decrease
    loss_metric: str = "auto"  # auto: train/loss when dense enough, else train/batch_loss
    min_loss_points: int = Field(50, ge=3)
    min_samples: int = Field(10, ge=3)


@dataclass
class StepwiseVerdict(Verdict):
    n_modes: int = 0
    spectral_steps: int | None = None  # groups of overlapping rises
    loss_steps: int = 0  # drops of the loss curve
    agree: bool | None = None
    separated: bool | None = None
    sigmoidal: bool | None = None  # every learned rise is sigmoidal
    in_order: bool | None = None  # learned in order of decreasing target
    order: list | None = None  # mode indices by step time
    step_times: list | None = None  # per mode, None where never learned
    rise_starts: list | None = None
    rise_ends: list | None = None
    rise_shapes: list | None = None  # (t_high - t_low) / t_step per mode
    theory_times: list | None = None
    theory_ratio: list | None = None  # observed / predicted step time
    theory: str = "none"
    loss_metric: str | None = None
    loss_step_times: list | None = None
    plateaus: list | None = None


def crossing(steps: np.ndarray, values: np.ndarray, level: float) -> float | None:
    """First step where values reach `level`, linearly interpolated; None if never."""
    hit = np.nonzero(values >= level)[0]
    if not len(hit):
        return None
    k = int(hit[0])
    if k == 0:
        return float(steps[0])
    v0, v1 = values[k - 1], values[k]
    return float(steps[k - 1] + (level - v0) / (v1 - v0) * (steps[k] - steps[k - 1]))


def mode_columns(metrics: pd.DataFrame, prefix: str) -> list[str]:
    cols = [c for c in metrics if c.startswith(prefix) and c[len(prefix):].isdigit()]
    return sorted(cols, key=lambda c: int(c[len(prefix):]))


@PHENOMENA.register("stepwise")
class Stepwise(Detector):
    """Detected when >= 2 teacher modes are learned in separate, sigmoidal rises."""

    Config = StepwiseConfig
    verdict_type = StepwiseVerdict
    key_metric = KeyMetric("spectral_steps", "maximize")
    field_ranges = {"step_times": NONNEGATIVE, "spectral_steps": NONNEGATIVE}
    panels = (
        Panel("mode strengths u_i^T W v_i", y=(STRENGTH + "*",), group_by=(SWEPT,)),
        Panel("singular values of the network map", y=(SV + "*",)),
        Panel("train loss: plateaus and drops", y=LOSSES, log_y=True),
    )

    @property
    def interval_fields(self) -> tuple[str, ...]:
        return ("step_times",)

    def required(self, experiment: dict) -> list:
        return [(STRENGTH + "0", SV + "0", *LOSSES)]

    def judge(self, metrics: pd.DataFrame, experiment: dict) -> Verdict:
        c = self.config
        columns = mode_columns(metrics, STRENGTH) or mode_columns(metrics, SV)
        loss_col = self._loss_column(metrics)
        staircase = loss_steps(*series(metrics, loss_col), min_slope=c.min_slope,
                               min_drop=c.min_drop, min_gap=c.min_gap, min_share=c.min_share)
        loss_fields = dict(loss_steps=staircase.n_steps, loss_metric=loss_col,
                           loss_step_times=staircase.times,
                           plateaus=[list(p) for p in staircase.plateaus])
        n_loss = f"loss curve: {staircase.n_steps} drop{'s' * (staircase.n_steps != 1)}"
        if not columns:
            n = len(series(metrics, loss_col)[0])
            if n < c.min_samples:
                return self.undetermined(f"only {n} values of {loss_col} (need "
                                         f"{c.min_samples})", **loss_fields)
            outcome = Outcome.DETECTED if staircase.staircase else Outcome.NOT_DETECTED
            summary = (f"stepwise (loss only): {n_loss}" if staircase.staircase
                       else f"no staircase (loss only): {n_loss}")
            return self.verdict(outcome, f"{n_loss} with plateaus between (need 2)", summary,
                                **loss_fields)
        curves = [series(metrics, column) for column in columns]
        n = min(len(steps) for steps, _ in curves)
        if n < c.min_samples:
            return self.undetermined(f"only {n} samples of the mode strengths (need "
                                     f"{c.min_samples})", n_modes=len(columns), **loss_fields)
        curves = [(steps, rolling_median(values, 5)) for steps, values in curves]
        targets = self._targets(curves, columns, experiment)
        rises = [tuple(crossing(steps, values, f * s) for f in
                       (c.rise_low, c.learned_fraction, c.rise_high))
                 for (steps, values), s in zip(curves, targets)]
        ends = [float(values[-1]) for _, values in curves]
        return self._spectral(rises, targets, ends, columns, experiment, staircase, n_loss,
                              loss_fields, float(metrics["step"].max()))

    def _spectral(self, rises, targets, ends, columns, experiment, staircase, n_loss,
                  loss_fields, last) -> Verdict:
        c = self.config
        learned = [i for i, r in enumerate(rises) if r[1] is not None and r[2] is not None]
        fell = [i for i in learned if ends[i] < c.learned_fraction * targets[i]]
        order = sorted(learned, key=lambda i: rises[i][1])
        groups: list[list[int]] = []
        reach = -math.inf
        for i in order:
            start = rises[i][0] if rises[i][0] is not None else rises[i][1]
            if groups and start <= reach:
                groups[-1].append(i)
            else:
                groups.append([i])
            reach = max(reach, rises[i][2])
        shapes = [(r[2] - r[0]) / r[1] if None not in r and r[1] > 0 else None for r in rises]
        flat = [i for i in learned if shapes[i] is None or shapes[i] > c.max_rise_shape]
        separated = len(groups) == len(learned)
        step_times = [r[1] for r in rises]
        theory, label = theory_for(experiment, targets)
        ratio = ([t / p if t is not None and p else None for t, p in zip(step_times, theory)]
                 if theory else None)
        agree = len(groups) == staircase.n_steps
        fields = dict(
            n_modes=len(columns), spectral_steps=len(groups), agree=agree, separated=separated,
            sigmoidal=not flat,
            in_order=all(targets[a] >= targets[b] for a, b in zip(order, order[1:])),
            order=order, step_times=step_times, rise_starts=[r[0] for r in rises],
            rise_ends=[r[2] for r in rises], rise_shapes=shapes, theory_times=theory,
            theory_ratio=ratio, theory=label, **loss_fields)
        times = _fmt(step_times) + (f" (theory {_fmt(theory)})" if theory else "")
        loss = n_loss + (" (agrees)" if agree else " (disagrees)")
        if len(learned) < 2:
            if len(learned) < len(columns):
                return self.undetermined(f"{len(learned)} of {len(columns)} modes learned by "
                                         f"step {format_step(last)}: the run stopped too early",
                                         **fields)
            return self.verdict(Outcome.NOT_DETECTED, f"{len(learned)} mode learned: no steps",
                                f"no steps: {len(learned)} of {len(columns)} modes learned; "
                                f"{loss}", **fields)
        if fell:
            i = fell[0]
            return self.verdict(
                Outcome.NOT_DETECTED, f"mode {i} was learned at step {format_step(rises[i][1])} "
                f"but fell back to {ends[i]:.3g} (< {c.learned_fraction} x {targets[i]:.3g}) by "
                "the end", f"no steps: mode {i} rose at step {format_step(rises[i][1])}, then "
                f"fell back; {loss}",
                **fields)
        if len(groups) < 2:
            return self.verdict(
                Outcome.NOT_DETECTED, f"{len(learned)} modes learned in {len(groups)} "
                "overlapping rise" + "s" * (len(groups) != 1),
                f"no separate steps: {len(learned)} modes learned in {len(groups)} overlapping "
                f"rise{'s' * (len(groups) != 1)} at {times}; {loss}", **fields)
        if flat:
            worst = max(flat, key=lambda i: math.inf if shapes[i] is None else shapes[i])
            shape = "undefined" if shapes[worst] is None else f"{shapes[worst]:.2f}"
            return self.verdict(
                Outcome.NOT_DETECTED, f"mode {worst} rose like a saturation, not a sigmoid: "
                f"(t90 - t10) / t50 = {shape} > {c.max_rise_shape}",
                f"no steps: {len(learned)} separate but gradual rises at {times}; {loss}",
                **fields)
        order_text = ("in order of decreasing s" if fields["in_order"]
                      else "out of order of s")
        missing = len(columns) - len(learned)
        unlearned = f" ({missing} of {len(columns)} modes not learned yet)" if missing else ""
        rises_text = (f"{len(learned)} separate sigmoidal rises" if separated else
                      f"{len(learned)} sigmoidal rises in {len(groups)} separate steps")
        return self.verdict(
            Outcome.DETECTED, f"{rises_text} (largest (t90 - t10) / "
            f"t50 = {max(shapes[i] for i in learned):.2f})",
            f"{len(groups)} separate steps at {times}{unlearned}, {order_text}; {loss}",
            **fields)

    def _loss_column(self, metrics: pd.DataFrame) -> str | None:
        c = self.config
        if c.loss_metric != "auto":
            return c.loss_metric if c.loss_metric in metrics else None
        counts = {col: len(series(metrics, col)[0]) for col in LOSSES}
        dense = [col for col in LOSSES if counts[col] >= c.min_loss_points]
        logged = [col for col in LOSSES if counts[col]]
        return (dense or logged or [None])[0]

    @staticmethod
    def _targets(curves: list, columns: list[str], experiment: dict) -> list[float]:
        """The teacher's singular values, or (no known teacher) the largest smoothed values."""
        task = experiment.get("task")
        try:
            targets = [float(s) for s in (task or {}).get("singular_values") or []]
        except (TypeError, ValueError, AttributeError):
            targets = []
        if len(targets) != len(columns) or not columns[0].startswith(STRENGTH):
            targets = [float(values.max()) for _, values in curves]
        return targets

    def figures(self, view) -> list:
        from dynamics_lab.phenomena.stepwise.figures import write_figures

        return write_figures(view)


def _fmt(values) -> str:
    return ", ".join("-" if v is None else f"{v:,.0f}".replace(",", " ") for v in values)
