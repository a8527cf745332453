"""Hidden progress (Barak et al. 2022): on sparse parity the loss sits on a long plateau, then
drops suddenly, while the first layer's weight concentrates on the relevant coordinates all along.

Reads `loss_column` (default val/loss, the population loss on fresh samples), `val/acc` and
`mass_column` (default features/relevant_mass_top10, the top-decile neurons' relevant mass):
  plateau value   median loss over the first `reference_evals` evaluations, stopping at the
                  first one outside `plateau_band` (relative) of the initial loss
  plateau         from the first step within `plateau_band` (relative) of that value to the last
                  such step before the drop
  drop step       first step the loss <= drop_fraction * plateau value, or val/acc >=
                  acc_threshold, whichever comes first
  mass growth     mass at the plateau's end over mass at its start
`detected` means a plateau of at least min_plateau_steps before the drop, a drop, and a mass
growth of at least 1 + min_mass_growth during the plateau.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd
from pydantic import Field

from dynamics_lab.phenomena.base import Detector, Verdict, first_step, format_step, last_value
from dynamics_lab.registry import PHENOMENA
from dynamics_lab.schema import NamedSection


class HiddenProgressConfig(NamedSection):
    name: Literal["hidden_progress"] = "hidden_progress"
    loss_column: str = "val/loss"
    mass_column: str = "features/relevant_mass_top10"
    reference_evals: int = Field(5, ge=1)
    plateau_band: float = Field(0.1, gt=0, lt=1)
    drop_fraction: float = Field(0.5, gt=0, lt=1)
    acc_threshold: float = Field(0.95, gt=0, le=1)
    min_plateau_steps: int = Field(300, ge=0)
    min_mass_growth: float = Field(0.1, ge=0)


@dataclass
class HiddenProgressVerdict(Verdict):
    plateau_value: float | None
    plateau_start: int | None
    plateau_end: int | None
    drop_step: int | None
    plateau_length: int | None  # drop step - plateau start
    mass_start: float | None
    mass_before_drop: float | None
    mass_growth: float | None  # ratio
    final_loss: float | None
    final_val_acc: float | None


def value_at(metrics: pd.DataFrame, column: str, step: int) -> float | None:
    """The last logged value of `column` at or before `step`."""
    if column not in metrics:
        return None
    values = metrics[["step", column]].dropna()
    values = values[values["step"] <= step]
    return float(values[column].iloc[-1]) if len(values) else None


@PHENOMENA.register("hidden_progress")
class HiddenProgress(Detector):
    """Long loss plateau, sudden drop, and relevant-feature mass rising before the drop."""

    Config = HiddenProgressConfig

    def detect(self, metrics: pd.DataFrame, config: HiddenProgressConfig,
               experiment: dict) -> Verdict:
        loss = (metrics[["step", config.loss_column]].dropna()
                if config.loss_column in metrics else pd.DataFrame(columns=["step", "x"]))
        loss.columns = ["step", "loss"]
        plateau = self.plateau_value(loss["loss"], config)
        drop = start = end = None
        if plateau is not None:
            candidates = (first_step(loss, "loss", config.drop_fraction * plateau, above=False),
                          first_step(metrics, "val/acc", config.acc_threshold))
            steps = [s for s in candidates if s is not None]
            drop = min(steps) if steps else None
            within = loss[(loss["loss"] - plateau).abs() <= config.plateau_band * plateau]
            before = within[within["step"] < drop] if drop is not None else within
            if len(before):
                start, end = int(before["step"].iloc[0]), int(before["step"].iloc[-1])
        length = drop - start if drop is not None and start is not None else None
        m0 = value_at(metrics, config.mass_column, start) if start is not None else None
        m1 = value_at(metrics, config.mass_column, end) if end is not None else None
        growth = m1 / m0 if m0 and m1 is not None else None
        long_plateau = length is not None and length >= config.min_plateau_steps
        rising = growth is not None and growth >= 1 + config.min_mass_growth
        detected = drop is not None and long_plateau and rising
        verdict = HiddenProgressVerdict(
            phenomenon="hidden_progress", detected=bool(detected), summary="",
            plateau_value=plateau, plateau_start=start, plateau_end=end, drop_step=drop,
            plateau_length=length, mass_start=m0, mass_before_drop=m1, mass_growth=growth,
            final_loss=last_value(loss, "loss"), final_val_acc=last_value(metrics, "val/acc"))
        verdict.summary = self.summary(verdict, config, long_plateau, rising,
                                       int(loss["step"].iloc[-1]) if len(loss) else None)
        return verdict

    @staticmethod
    def plateau_value(loss: pd.Series, config: HiddenProgressConfig) -> float | None:
        """Median of the first evaluations that stay within the band of the initial loss."""
        if loss.empty:
            return None
        first = loss.head(config.reference_evals)
        inside = (first - first.iloc[0]).abs() <= config.plateau_band * abs(first.iloc[0])
        return float(first[inside.cummin()].median())

    @staticmethod
    def summary(v: HiddenProgressVerdict, config: HiddenProgressConfig, long_plateau: bool,
                rising: bool, last_step: int | None) -> str:
        mass = (f"relevant mass {v.mass_start:.3f}->{v.mass_before_drop:.3f} "
                f"({100 * (v.mass_growth - 1):+.0f}%) during the plateau"
                if v.mass_growth is not None else "relevant mass not logged")
        if v.plateau_value is None:
            return f"no hidden progress: {config.loss_column} not logged"
        if v.drop_step is None:
            return (f"no hidden progress: still on the plateau at step {format_step(last_step)} "
                    f"(loss {v.final_loss:.3g}); {mass}")
        plateau = (f"{format_step(v.plateau_length)}-step plateau at loss {v.plateau_value:.3g}, "
                   f"drop at step {format_step(v.drop_step)}")
        if not long_plateau:
            return (f"no hidden progress: learned at step {format_step(v.drop_step)} without a "
                    f"long plateau (< {config.min_plateau_steps} steps)")
        if not rising:
            return f"no hidden progress: {plateau}, but {mass}"
        return f"hidden progress: {plateau}; {mass}"
