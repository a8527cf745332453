"""Lazy vs rich training (Chizat & Bach 2019) and grokking as the lazy-to-rich transition
(Kumar et al. 2023): does the kernel move and line up with the target when the test loss falls?

Reads `train/loss`, `val/loss` and, when logged, `ntk/alignment` and `ntk/distance_init`:
  fit step          first step train/loss <= fit_fraction * its initial value
  test drop step    first step val/loss <= its initial value / drop_factor
  alignment rise    first step the alignment is half-way from its initial value to its maximum,
                    when it rose by at least min_alignment_rise
  regime            rich: test loss dropped and the kernel moved (distance >= lazy_distance);
                    lazy: the kernel stayed within lazy_distance of its init and the test loss
                    did not drop; intermediate: anything else
  grokked           the test drop came at least min_delay_ratio times after the fit step
  coincides         |alignment rise - test drop| <= coincidence_tolerance * test drop step
`detected` means the rich regime (feature learning) was reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd
from pydantic import Field

from dynamics_lab.phenomena.base import Detector, Verdict, first_step, format_step, last_value
from dynamics_lab.registry import PHENOMENA
from dynamics_lab.schema import NamedSection


class LazyRichConfig(NamedSection):
    name: Literal["lazy_rich"] = "lazy_rich"
    fit_fraction: float = Field(0.05, gt=0, lt=1)
    drop_factor: float = Field(5.0, gt=1)
    min_alignment_rise: float = Field(0.05, gt=0)
    lazy_distance: float = Field(0.01, gt=0)
    coincidence_tolerance: float = Field(0.5, ge=0)
    min_delay_ratio: float = Field(2.0, ge=1)


@dataclass
class LazyRichVerdict(Verdict):
    regime: str
    fit_step: int | None
    test_drop_step: int | None
    test_loss_ratio: float | None  # initial val/loss over its minimum
    grokked: bool
    delay_ratio: float | None
    alignment_init: float | None
    alignment_max: float | None
    alignment_rise_step: int | None
    coincides: bool | None
    kernel_distance: float | None  # the largest ntk/distance_init seen
    final_train_loss: float | None
    final_val_loss: float | None


def first_value(metrics: pd.DataFrame, column: str) -> float | None:
    if column not in metrics:
        return None
    values = metrics[column].dropna()
    return float(values.iloc[0]) if len(values) else None


def column_max(metrics: pd.DataFrame, column: str) -> float | None:
    if column not in metrics or metrics[column].dropna().empty:
        return None
    return float(metrics[column].max())


@PHENOMENA.register("lazy_rich")
class LazyRich(Detector):
    """Rich when the test loss drops and the kernel moves; lazy when the kernel stays put."""

    Config = LazyRichConfig

    def detect(self, metrics: pd.DataFrame, config: LazyRichConfig, experiment: dict) -> Verdict:
        train0, val0 = first_value(metrics, "train/loss"), first_value(metrics, "val/loss")
        fit = first_step(metrics, "train/loss", config.fit_fraction * train0,
                         above=False) if train0 else None
        drop = first_step(metrics, "val/loss", val0 / config.drop_factor,
                          above=False) if val0 else None
        val_min = float(metrics["val/loss"].min()) if val0 is not None else None
        ratio = val0 / val_min if val0 is not None and val_min else None
        a0, a_max = first_value(metrics, "ntk/alignment"), column_max(metrics, "ntk/alignment")
        rise = None
        if a0 is not None and a_max is not None and a_max - a0 >= config.min_alignment_rise:
            rise = first_step(metrics, "ntk/alignment", a0 + (a_max - a0) / 2)
        distance = column_max(metrics, "ntk/distance_init")
        moved = distance is None or distance >= config.lazy_distance
        if drop is not None and moved:
            regime = "rich"
        elif drop is None and distance is not None and distance < config.lazy_distance:
            regime = "lazy"
        else:
            regime = "intermediate"
        delay = drop / max(fit, 1) if fit is not None and drop is not None else None
        grokked = delay is not None and drop > fit and delay >= config.min_delay_ratio
        coincides = None
        if rise is not None and drop is not None:
            coincides = abs(rise - drop) <= config.coincidence_tolerance * drop
        return LazyRichVerdict(
            phenomenon="lazy_rich", detected=regime == "rich",
            summary=self.summary(regime, fit, drop, ratio, grokked, delay, a0, a_max, rise,
                                 coincides, distance),
            regime=regime, fit_step=fit, test_drop_step=drop, test_loss_ratio=ratio,
            grokked=bool(grokked), delay_ratio=delay, alignment_init=a0, alignment_max=a_max,
            alignment_rise_step=rise, coincides=coincides, kernel_distance=distance,
            final_train_loss=last_value(metrics, "train/loss"),
            final_val_loss=last_value(metrics, "val/loss"),
        )

    @staticmethod
    def summary(regime, fit, drop, ratio, grokked, delay, a0, a_max, rise, coincides,
                distance) -> str:
        parts = [f"{regime}{', grokked' if grokked else ''}:"]
        fell = f"test loss fell {ratio:.1f}x" if ratio is not None else "no test loss"
        if drop is not None:
            fell += f" (drop at step {format_step(drop)}"
            if fit is not None:
                fell += f", {delay:.1f}x after" if grokked else ";"
                fell += f" train fit at step {format_step(fit)}"
            fell += ")"
        else:
            fell = f"train fit at step {format_step(fit)}, " + fell.replace("fell", "fell only")
        parts.append(fell)
        if a0 is not None:
            align = f"alignment {a0:.2f}->{a_max:.2f}"
            if rise is not None:
                align += f" rising at step {format_step(rise)}"
                if coincides is not None:
                    align += " (coincides with the drop)" if coincides else " (not at the drop)"
            parts.append(align)
        if distance is not None:
            parts.append(f"kernel moved {distance:.3g} from init")
        return parts[0] + " " + ", ".join(parts[1:])
