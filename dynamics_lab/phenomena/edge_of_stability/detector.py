"""Edge of stability (Cohen et al. 2021): under full-batch gradient descent the sharpness rises
from below ("progressive sharpening") until it reaches the stability threshold (2/eta for GD),
then hovers there while the loss, non-monotone step to step, keeps falling over the long run.

Sharpness is `hessian/precond_lambda_max` when logged (Adam), else `hessian/lambda_max`; a
sample whose eigensolver did not certify it (its flag, `hessian/precond_certified` resp.
`hessian/certified`, 0 or missing in a run that logs it) is dropped; the
threshold is the logged `hessian/threshold` in force at each sample (it moves with a learning
rate schedule), else it follows from the `optim` section.
  sharpening       the first sharpness sample is at most max_start_ratio x threshold (a run that
                   starts above and relaxes onto it, e.g. a catapult, did not sharpen)
  crossing         first sample >= reach_fraction x threshold
  band             within +-band of the threshold for at least min_fraction_within of the
                   samples in the window after the crossing (the first window_fraction of the
                   later samples): with cross-entropy the sharpness hovers, then declines as the
                   loss goes to zero (Cohen et al. 2021, sec. 3), so the whole rest of the run
                   is not the test. A sharpness that swings far above and below the threshold
                   (median at it, few samples within the band) is not hovering at it.
  loss             falls over the long run: the median loss of the last fifth of the run after
                   the crossing is below that of the first fifth (a loss that grows while the
                   sharpness sits at the threshold is divergence, not the edge of stability)
A run whose training loss became non-finite (`curves.diverged_at`) diverged: not detected.
Undetermined: sharpness, loss or a positive threshold unknown; fewer than min_samples sharpness
samples; fewer than min_before_crossing samples before the crossing (sharpening drawn from a
handful of points is not evidence of it); fewer than min_later_samples samples, or
fewer than min_hover_ratio x the crossing step, after the crossing; sharpness still rising
below the threshold at the end of the run (it would reach it within another run's length at its
last pace).

The verdict names the picture it saw (`picture`): oscillating at the edge (sharpness above
and below the threshold, the loss non-monotone: Cohen et al.), settled just below it (at
reach..1x with a monotone loss: the other fixed point of Agarwala et al. 2023's second-order
model), or a catapult (the threshold reached within `catapult_steps` of the start: a jump, not
sharpening: not detected). Too few samples before the crossing withhold only a positive verdict;
a run that fails the band or the loss test is not detected on those grounds alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dynamics_lab.metric_names import Hessian
from dynamics_lab.phenomena.base import (
    FRACTION,
    NONNEGATIVE,
    Detector,
    Outcome,
    Verdict,
    format_step,
)
from dynamics_lab.phenomena.curves import diverged_at, first, first_column, series
from dynamics_lab.phenomena.dashboard import SWEPT, KeyMetric, Panel
from dynamics_lab.phenomena.edge_of_stability.picture import picture_of
from dynamics_lab.phenomena.edge_of_stability.verdict import (
    EdgeOfStabilityConfig,
    EdgeOfStabilityVerdict,
)
from dynamics_lab.registry import PHENOMENA
from dynamics_lab.thresholds import stability_threshold

SHARPNESS = (Hessian.PRECOND_LAMBDA_MAX, Hessian.LAMBDA_MAX)
THRESHOLD = Hessian.THRESHOLD
# The flag each sharpness column's eigensolver logs beside it.
CERTIFIED = {Hessian.PRECOND_LAMBDA_MAX: Hessian.PRECOND_CERTIFIED,
             Hessian.LAMBDA_MAX: Hessian.CERTIFIED}
LOSSES = ("train/batch_loss", "train/loss")


def threshold_from_config(experiment: dict) -> float | None:
    """The stability threshold the `optim` section implies (the formula HessianSpectrum applies
    to the optimizer, dynamics_lab/thresholds.py); None without a positive learning rate."""
    optim = experiment.get("optim")
    optim = optim if isinstance(optim, dict) else {}
    try:
        lr = float(optim.get("lr") or 0)
        name = optim.get("name", "adamw")
        if name in ("adam", "adamw"):
            value = stability_threshold(lr, adam_beta1=float(
                (optim.get("betas") or (0.9, 0.999))[0]))
        else:  # the optim section has no nesterov or dampening: heavy ball, or gd (momentum 0)
            value = stability_threshold(lr, momentum=0.0 if name == "gd" else float(
                optim.get("momentum") or 0.0))
    except (TypeError, ValueError, IndexError, ZeroDivisionError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def _adam(experiment: dict) -> bool:
    return (experiment.get("optim") or {}).get("name") in ("adam", "adamw")


@PHENOMENA.register("edge_of_stability")
class EdgeOfStability(Detector):
    """Sharpened from below, hovered at the threshold, loss fell (module docstring)."""

    Config = EdgeOfStabilityConfig
    verdict_type = EdgeOfStabilityVerdict
    key_metric = KeyMetric("fraction_within", "maximize")
    # The hover level, the overshoot and the sharpening samples: what CLAIMS.md states per eta.
    interval_fields = ("fraction_within", "median_ratio", "max_sharpness_ratio",
                       "n_before_crossing")
    field_ranges = {"fraction_within": FRACTION, "median_ratio": NONNEGATIVE,
                    "max_sharpness_ratio": NONNEGATIVE, "n_before_crossing": NONNEGATIVE}
    panels = (
        Panel("sharpness and its stability threshold (2/eta)",
              y=(*SHARPNESS, THRESHOLD), group_by=(SWEPT,)),
        Panel("train loss (non-monotone at the edge)", y=LOSSES, log_y=True),
    )

    def required(self, experiment: dict) -> list:
        sharpness = SHARPNESS[0] if _adam(experiment) else SHARPNESS
        return [sharpness, LOSSES]

    def judge(self, metrics: pd.DataFrame, experiment: dict) -> Verdict:
        c = self.config
        column = first_column(metrics, SHARPNESS)
        t_steps, logged = series(metrics, THRESHOLD)
        t_steps, logged = t_steps[logged > 0], logged[logged > 0]
        threshold = float(logged[-1]) if len(logged) else threshold_from_config(experiment)
        loss_steps, loss = series(metrics, first_column(metrics, LOSSES))
        rises = float((np.diff(loss) > 0).mean()) if len(loss) > 1 else None
        diverged = diverged_at(metrics)
        fields = dict(sharpness_metric=column, threshold=threshold, loss_rise_fraction=rises,
                      diverged_step=None if diverged is None else int(diverged))
        if diverged is not None:
            return self.verdict(Outcome.NOT_DETECTED,
                                f"the training loss became non-finite at step "
                                f"{format_step(diverged)}: the run diverged",
                                f"no edge of stability: diverged at step {format_step(diverged)}",
                                **fields)
        if threshold is None:
            return self.undetermined(f"no stability threshold ({THRESHOLD} not logged as a "
                                     "positive number and no optim.lr)", **fields)
        steps, values = series(metrics, column)
        certified = _certified(metrics, column)
        fields["n_uncertified"] = int((~certified).sum())
        steps, values = steps[certified], values[certified]
        if len(values) < c.min_samples:
            return self.undetermined(f"only {len(values)} sharpness samples (need "
                                     f"{c.min_samples})", **fields)
        ratio = values / _in_force(steps, t_steps, logged, threshold)
        fields.update(start_ratio=float(ratio[0]), max_sharpness_ratio=float(ratio.max()),
                      final_sharpness=float(values[-1]))
        name = "2/eta" if column == SHARPNESS[1] else "threshold"
        varies = len(logged) and logged.min() < logged.max()
        edge = (f"{name}={logged.min():.3g}..{logged.max():.3g}" if varies
                else f"{name}={threshold:.3g}")
        reached = first(ratio >= c.reach_fraction)
        if reached is None:
            if _still_rising(ratio, c.reach_fraction):
                return self.undetermined(f"sharpness still rising at the end ({ratio[-1]:.2f}x "
                                         f"of {edge}): the run stopped too early", **fields)
            return self.verdict(Outcome.NOT_DETECTED,
                                f"sharpness levelled off below {edge} (peak {ratio.max():.2f}x)",
                                f"sharpness never reached {edge}: peaked at {ratio.max():.2f}x "
                                "of it", **fields)
        crossing = float(steps[reached])
        fields["n_before_crossing"] = int(reached)
        later = ratio[reached + 1:]
        n_window = max(int(np.ceil(c.window_fraction * len(later))),
                       min(c.min_later_samples, len(later)))
        window = later[:n_window]
        within = float((np.abs(window - 1) <= c.band).mean()) if len(window) else None
        change = _long_run_change(loss_steps, loss, crossing)
        after = loss[loss_steps >= crossing]
        rises_after = float((np.diff(after) > 0).mean()) if len(after) > 1 else None
        above = float((window > 1).mean()) if len(window) else None
        before = ratio[:reached]
        total = float(ratio[reached] - ratio[0])  # the rise from the first sample to the crossing
        jump = (float(ratio[reached] - before[-1]) / total
                if len(before) and total > 0 else None)  # its share in the last interval
        half = len(before) // 2
        rose = half >= 1 and float(np.median(before[half:])) > float(np.median(before[:half]))
        fields.update(crossing_step=int(crossing), fraction_within=within,
                      n_window_samples=len(window), n_later_samples=len(later),
                      loss_change=change, above_fraction=above, rises_after=rises_after,
                      median_ratio=float(np.median(window)) if len(window) else None,
                      picture=picture_of(crossing, jump, above, rises_after, c))
        at = f"reached {edge} at step {format_step(crossing)}"
        if ratio[0] > c.max_start_ratio:
            return self.verdict(
                Outcome.NOT_DETECTED,
                f"sharpness started at {ratio[0]:.2f}x of {edge} (> {c.max_start_ratio}): no "
                "progressive sharpening from below",
                f"no edge of stability: sharpness started at {ratio[0]:.2f}x of {edge} and "
                "relaxed onto it", **fields)
        hovered = float(steps[-1]) - crossing
        if len(later) < c.min_later_samples or hovered < c.min_hover_ratio * crossing:
            return self.undetermined(
                f"sharpness {at}, too late to tell: {len(later)} later samples over "
                f"{format_step(hovered)} steps (need {c.min_later_samples} and "
                f"{c.min_hover_ratio} x the crossing step)", **fields)
        if change is None:
            return self.undetermined("too few loss values after the crossing", **fields)
        hover = (f"within {c.band:.0%} for {within:.0%} of the {len(window)} samples after "
                 "the crossing")
        if within < c.min_fraction_within:
            swing = (f" (median {fields['median_ratio']:.2f}x: swinging around it, not "
                     "hovering)" if abs(fields["median_ratio"] - 1) <= c.band else "")
            return self.verdict(Outcome.NOT_DETECTED, f"sharpness {at} but stayed {hover}{swing}",
                                f"sharpness {at} but stayed {hover}{swing}", **fields)
        if not np.isfinite(change) or change >= 1:
            grew = "became non-finite" if not np.isfinite(change) else f"grew {change:.2g}x"
            return self.verdict(Outcome.NOT_DETECTED,
                                f"sharpness {at} and stayed {hover}, but the loss {grew} "
                                "after the crossing", f"no edge of stability: the loss {grew} "
                                "at the threshold (divergence)", **fields)
        # A positive verdict needs the sharpening itself; the negative ones above do not.
        if fields["picture"] == "catapult":
            how = (f"within {c.catapult_steps} steps of the start" if crossing <= c.catapult_steps
                   else f"{jump:.0%} of its rise in the last sampling interval")
            return self.verdict(
                Outcome.NOT_DETECTED,
                f"sharpness {at}, {how}: a jump to the edge (catapult), not progressive "
                "sharpening", f"no progressive sharpening: sharpness jumped to {edge} by step "
                f"{format_step(crossing)}, {how} (catapult)", **fields)
        if len(before) >= 2 and not rose:
            return self.verdict(
                Outcome.NOT_DETECTED, f"sharpness {at}, but did not rise before it (median of "
                "the later half of the samples before the crossing not above the earlier half)",
                f"no progressive sharpening: sharpness did not rise before it {at}", **fields)
        if reached < c.min_before_crossing:
            return self.undetermined(
                f"sharpness {at} after only {reached} samples (need {c.min_before_crossing} "
                "before the crossing to show progressive sharpening): measure more often "
                "early (log_spaced)", **fields)
        rose = f"; loss rose on {rises:.0%} of steps" if rises is not None else ""
        picture = fields["picture"]
        return self.verdict(Outcome.DETECTED,
                            f"sharpened from {ratio[0]:.2f}x over {reached} samples, {at}, "
                            f"{picture}: stayed {hover}; the loss fell {1 / change:.3g}x "
                            "after it",
                            f"sharpness {at} and stayed {hover}, {picture}{rose}", **fields)

    def figures(self, view) -> list:
        from dynamics_lab.phenomena.edge_of_stability.figures import write_figures

        return write_figures(view)


def _in_force(steps: np.ndarray, t_steps: np.ndarray, logged: np.ndarray,
              default: float) -> np.ndarray:
    """The threshold at each sample: the last one logged at or before it (the first one for
    samples before any), or `default` throughout when none was logged."""
    if not len(logged):
        return np.full(len(steps), default)
    k = np.searchsorted(t_steps, steps, side="right") - 1
    return logged[np.clip(k, 0, None)]


def _certified(metrics: pd.DataFrame, column: str) -> np.ndarray:
    """For each finite sample of the sharpness `column` (in `series` order), whether its
    eigensolver certified it: the flag logged in the same row (`hessian/certified`, or
    `hessian/precond_certified` for the preconditioned sharpness). A run that logged no flag
    has all samples certified; a sample whose flag is missing where the run logs one is not."""
    flag = CERTIFIED.get(column)
    rows = np.isfinite(metrics[column].to_numpy(float))
    if flag is None or flag not in metrics:
        return np.ones(int(rows.sum()), dtype=bool)
    return metrics[flag].to_numpy(float)[rows] > 0


def _still_rising(ratio: np.ndarray, reach: float) -> bool:
    """At the pace of the last fifth of the samples (median over the fifth before), sharpness
    would reach `reach` within another run of the same length."""
    k = len(ratio) // 5
    if k < 1:
        return False
    last, before = float(np.median(ratio[-k:])), float(np.median(ratio[-2 * k:-k]))
    return last > before and (reach - last) / (last - before) <= 5


def _long_run_change(steps: np.ndarray, loss: np.ndarray, start: float) -> float | None:
    """Median loss of the last fifth over that of the first fifth of the losses from `start`."""
    after = loss[steps >= start]
    k = len(after) // 5
    if k < 1:
        return None
    if not np.all(np.isfinite(after)):
        return float("inf")
    return float(np.median(after[-k:]) / max(float(np.median(after[:k])), 1e-300))
