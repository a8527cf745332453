"""What the edge-of-stability detector takes and returns: its thresholds (the defaults every
verdict is judged by; a shipped YAML that overrides one says why) and its verdict's fields."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from dynamics_lab.phenomena.base import Verdict
from dynamics_lab.schema import NamedSection


class EdgeOfStabilityConfig(NamedSection):
    reach_fraction: float = Field(0.95, gt=0, le=1)  # "reached" = sharpness >= this * threshold
    band: float = Field(0.1, gt=0)  # "at the edge" = |sharpness / threshold - 1| <= band
    min_fraction_within: float = Field(0.5, ge=0, le=1)
    min_later_samples: int = Field(5, ge=1)
    window_fraction: float = Field(0.5, gt=0, le=1)  # of the later samples the band is judged on
    max_start_ratio: float = Field(0.8, gt=0, lt=1)  # sharpening from below: start <= this
    min_hover_ratio: float = Field(0.25, ge=0)  # steps after the crossing / crossing step
    min_samples: int = Field(10, ge=2)  # sharpness samples, fewer: undetermined
    # Progressive sharpening is a curve, not a pair of points: fewer samples before the
    # crossing than this and the verdict is undetermined (Cohen et al. sample tens to hundreds).
    min_before_crossing: int = Field(10, ge=1)
    # A crossing within this many steps of the start is a jump to the edge (a catapult, Lewkowycz
    # et al. 2020), not progressive sharpening, however densely it was sampled.
    catapult_steps: int = Field(25, ge=0)
    # Settled just below: at most this fraction of the window's samples above the threshold and
    # the loss rising on at most `settled_max_rises` of the steps after the crossing.
    settled_max_above: float = Field(0.1, ge=0, le=1)
    settled_max_rises: float = Field(0.1, ge=0, le=1)


@dataclass
class EdgeOfStabilityVerdict(Verdict):
    threshold: float | None = None
    sharpness_metric: str | None = None
    start_ratio: float | None = None  # first sharpness sample / threshold
    crossing_step: int | None = None
    fraction_within: float | None = None  # of the samples in the window after the crossing
    n_window_samples: int = 0
    n_later_samples: int = 0
    max_sharpness_ratio: float | None = None  # max sharpness / threshold
    final_sharpness: float | None = None
    loss_change: float | None = None  # median loss, last fifth / first fifth after the crossing
    loss_rise_fraction: float | None = None  # of consecutive logged losses that went up
    median_ratio: float | None = None  # median sharpness / threshold in the window
    diverged_step: int | None = None  # first step with a non-finite training loss
    n_before_crossing: int = 0  # sharpness samples before the crossing
    above_fraction: float | None = None  # of the window's samples above the threshold
    rises_after: float | None = None  # of consecutive losses after the crossing that went up
    # What was seen: "oscillating at the edge" (sharpness above and below the threshold, the
    # loss non-monotone), "settled just below" (sharpness at reach..1x, the loss monotone;
    # Agarwala et al. 2023 predict both), "catapult" (reached within catapult_steps).
    picture: str | None = None
    n_uncertified: int = 0  # sharpness samples dropped: their eigensolver did not certify them
