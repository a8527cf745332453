"""Grokking: validation accuracy rises long after the training set is fit (Power et al. 2022)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd
from pydantic import Field

from dynamics_lab.phenomena.base import Detector, Verdict, first_step, format_step, last_value
from dynamics_lab.registry import PHENOMENA
from dynamics_lab.schema import NamedSection


class GrokkingConfig(NamedSection):
    name: Literal["grokking"] = "grokking"
    train_threshold: float = Field(0.99, gt=0, le=1)  # "fit" = train accuracy reaches this
    val_threshold: float = Field(0.95, gt=0, le=1)  # "generalized" = val accuracy reaches this
    min_delay_ratio: float = Field(2.0, ge=1)


@dataclass
class GrokkingVerdict(Verdict):
    fit_step: int | None
    generalization_step: int | None
    delay_ratio: float | None
    final_train_acc: float | None
    final_val_acc: float | None
    max_val_acc: float | None


@PHENOMENA.register("grokking")
class Grokking(Detector):
    """Detected when generalization comes at least `min_delay_ratio` times later than fitting."""

    Config = GrokkingConfig

    def detect(self, metrics: pd.DataFrame, config: GrokkingConfig, experiment: dict) -> Verdict:
        fit = first_step(metrics, "train/acc", config.train_threshold)
        gen = first_step(metrics, "val/acc", config.val_threshold)
        ratio = gen / max(fit, 1) if fit is not None and gen is not None else None
        detected = ratio is not None and gen > fit and ratio >= config.min_delay_ratio
        max_val = float(metrics["val/acc"].max()) if "val/acc" in metrics else None
        if detected:
            summary = (f"grokked at step {format_step(gen)}, {ratio:.1f}x after fitting "
                       f"(train fit at step {format_step(fit)})")
        elif fit is None:
            summary = ("no grokking: never fit the training set "
                       f"(train acc < {config.train_threshold})")
        elif gen is None:
            peak = "unknown" if max_val is None else f"{max_val:.3f}"
            summary = (f"no grokking: fit at step {format_step(fit)}, but val acc peaked at "
                       f"{peak} < {config.val_threshold}")
        else:
            summary = (f"no grokking: generalized at step {format_step(gen)}, only {ratio:.1f}x "
                       f"after fitting at step {format_step(fit)}")
        return GrokkingVerdict(
            phenomenon="grokking", detected=bool(detected), summary=summary, fit_step=fit,
            generalization_step=gen, delay_ratio=ratio,
            final_train_acc=last_value(metrics, "train/acc"),
            final_val_acc=last_value(metrics, "val/acc"), max_val_acc=max_val,
        )
