"""Edge of stability: sharpness rises to the optimizer's threshold (2/eta for GD) and hovers there
while the loss keeps falling, non-monotonically (Cohen et al. 2021, 2022).

Sharpness is `hessian/lambda_max`, or `hessian/precond_lambda_max` when logged (Adam). The
threshold is the logged `hessian/threshold` (what the measurement read from the optimizer), else
it is computed from the experiment's `optim` section. Detected when sharpness reaches
`reach_fraction` of the threshold and at least `min_fraction_within` of the at least
`min_later_samples` later sharpness samples lie within +-`band` of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from dynamics_lab.phenomena.base import Detector, Verdict, format_step
from dynamics_lab.registry import PHENOMENA
from dynamics_lab.schema import NamedSection

SHARPNESS = ("hessian/precond_lambda_max", "hessian/lambda_max")
THRESHOLD = "hessian/threshold"
LOSS = "train/batch_loss"


class EdgeOfStabilityConfig(NamedSection):
    name: Literal["edge_of_stability"] = "edge_of_stability"
    reach_fraction: float = Field(0.95, gt=0, le=1)  # "reached" = sharpness >= this * threshold
    band: float = Field(0.1, gt=0)  # "at the edge" = |sharpness / threshold - 1| <= band
    min_fraction_within: float = Field(0.5, ge=0, le=1)
    min_later_samples: int = Field(3, ge=1)


@dataclass
class EdgeOfStabilityVerdict(Verdict):
    threshold: float | None
    sharpness_metric: str | None
    crossing_step: int | None
    fraction_within: float | None  # of sharpness samples after the crossing
    n_later_samples: int
    max_sharpness_ratio: float | None  # max sharpness / threshold
    final_sharpness: float | None
    loss_rise_fraction: float | None  # of consecutive logged batch losses that went up


def threshold_from_config(experiment: dict) -> float | None:
    """The stability threshold the `optim` section implies (as HessianSpectrum computes it)."""
    optim = experiment.get("optim") or {}
    lr = optim.get("lr")
    if not lr:
        return None
    name = optim.get("name", "adamw")
    if name in ("adam", "adamw"):
        beta1 = (optim.get("betas") or (0.9, 0.999))[0]
        return (2 + 2 * beta1) / ((1 - beta1) * lr)
    beta = 0.0 if name == "gd" else float(optim.get("momentum") or 0.0)
    return (2 + 2 * beta) / lr


def series(metrics: pd.DataFrame, column: str) -> pd.DataFrame:
    return metrics[["step", column]].dropna() if column in metrics else pd.DataFrame()


def loss_rise_fraction(metrics: pd.DataFrame) -> float | None:
    losses = series(metrics, LOSS)
    if len(losses) < 2:
        return None
    return float((np.diff(losses[LOSS].to_numpy()) > 0).mean())


@PHENOMENA.register("edge_of_stability")
class EdgeOfStability(Detector):
    """Reached the threshold, then stayed within the band for most of the remaining samples."""

    Config = EdgeOfStabilityConfig

    def detect(self, metrics: pd.DataFrame, config: EdgeOfStabilityConfig,
               experiment: dict) -> Verdict:
        column = next((c for c in SHARPNESS if len(series(metrics, c))), None)
        logged = series(metrics, THRESHOLD)
        threshold = float(logged[THRESHOLD].iloc[-1]) if len(logged) else (
            threshold_from_config(experiment))
        rises = loss_rise_fraction(metrics)
        empty = dict(sharpness_metric=column, crossing_step=None, fraction_within=None,
                     n_later_samples=0, max_sharpness_ratio=None, final_sharpness=None,
                     loss_rise_fraction=rises)
        missing = self._missing(column, threshold, experiment)
        if missing:
            return EdgeOfStabilityVerdict("edge_of_stability", False, f"no verdict: {missing}",
                                          threshold=threshold, **empty)
        sharp = series(metrics, column)
        steps, values = sharp["step"].to_numpy(), sharp[column].to_numpy(dtype=float)
        ratio = values / threshold
        reached = np.flatnonzero(ratio >= config.reach_fraction)
        crossing = int(steps[reached[0]]) if len(reached) else None
        later = ratio[reached[0] + 1:] if len(reached) else ratio[:0]
        within = float((np.abs(later - 1) <= config.band).mean()) if len(later) else None
        detected = (within is not None and len(later) >= config.min_later_samples
                    and within >= config.min_fraction_within)
        name = "2/eta" if column == "hessian/lambda_max" else "threshold"
        rose = f"; loss rose on {rises:.0%} of steps" if rises is not None else ""
        if crossing is None:
            summary = (f"sharpness never reached {name}={threshold:.1f}: peaked at "
                       f"{ratio.max():.2f}x of it{rose}")
        elif len(later) < config.min_later_samples:
            summary = (f"sharpness reached {name}={threshold:.1f} at step {format_step(crossing)}, "
                       f"too late to tell: {len(later)} later samples "
                       f"(need {config.min_later_samples}){rose}")
        else:
            stayed = "and stayed" if detected else "but stayed"
            summary = (f"sharpness reached {name}={threshold:.1f} at step {format_step(crossing)} "
                       f"{stayed} within {config.band:.0%} for {within:.0%} of "
                       f"{len(later)} later samples{rose}")
        return EdgeOfStabilityVerdict(
            "edge_of_stability", bool(detected), summary, threshold=threshold,
            sharpness_metric=column, crossing_step=crossing, fraction_within=within,
            n_later_samples=int(len(later)), max_sharpness_ratio=float(ratio.max()),
            final_sharpness=float(values[-1]), loss_rise_fraction=rises)

    @staticmethod
    def _missing(column: str | None, threshold: float | None, experiment: dict) -> str:
        """Why no verdict is possible, or '' when sharpness and threshold are both known."""
        if column is None:
            return "no sharpness logged (add measure: {hessian: ...})"
        if threshold is None:
            return "no stability threshold (no hessian/threshold and no optim.lr)"
        adam = (experiment.get("optim") or {}).get("name") in ("adam", "adamw")
        if adam and column == "hessian/lambda_max":
            return "Adam's threshold applies to the preconditioned sharpness, which was not logged"
        return ""
