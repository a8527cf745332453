"""Hidden progress (Barak et al. 2022): on sparse parity the loss sits on a long plateau, then
drops suddenly, while the first layer's weight concentrates on the relevant coordinates all along.

Reads `loss_column` (default val/loss, the population loss on fresh samples), `mass_column`
(default features/relevant_mass_top10, the top-decile neurons' relevant mass) and, when logged,
`val/acc`. The loss is smoothed by a running median of three evaluations.
  plateau       the first flat stretch (>= reference_evals evaluations in a row within
                +-plateau_band of their median) that a drop follows; its level is that median,
                so a fast initial transient before the plateau does not set it (a stretch after
                the loss has already fallen to drop_fraction of its earlier maximum is the
                floor after learning, not a plateau)
  drop step     first evaluation after the plateau with loss <= drop_fraction x the level, or
                val/acc >= acc_threshold, whichever comes first
  sudden        the drop comes within max_drop_ratio x the plateau's length of its end (a loss
                that declines steadily, linearly or exponentially, has no plateau-then-drop)
  stays down    the smoothed loss at or below drop_fraction x the level, or val/acc at or
                above acc_threshold, in at least hold_fraction of the evaluations from the drop
                on (a dip that returns to the plateau is not the sudden learning of the parity)
  mass growth   mass at the plateau's end over mass at its start
`detected` means a plateau of at least min_plateau_steps, a sudden drop after it that stays
down, and a mass growth of at least 1 + min_mass_growth during it. Undetermined: a column
missing, fewer than min_evals evaluations, the loss still on its plateau at the end of the run,
a drop seen in fewer than sustain_evals evaluations (at the very end), or the mass not logged
at the plateau's start and end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import Field

from dynamics_lab.metric_names import Features
from dynamics_lab.phenomena.base import NONNEGATIVE, Detector, Outcome, Verdict, format_step
from dynamics_lab.phenomena.curves import first, flat_stretches, rolling_median, series, value_at
from dynamics_lab.phenomena.dashboard import SWEPT, KeyMetric, Panel
from dynamics_lab.registry import PHENOMENA
from dynamics_lab.schema import NamedSection

ACC = "val/acc"


class HiddenProgressConfig(NamedSection):
    loss_column: str = "val/loss"
    mass_column: str = Features.RELEVANT_MASS_TOP10
    reference_evals: int = Field(5, ge=2)  # a plateau spans at least this many evaluations
    plateau_band: float = Field(0.1, gt=0, lt=1)
    drop_fraction: float = Field(0.5, gt=0, lt=1)
    acc_threshold: float = Field(0.95, gt=0, le=1)
    min_plateau_steps: int = Field(300, ge=0)
    max_drop_ratio: float = Field(1.0, gt=0)  # drop step - plateau end <= this x plateau length
    min_mass_growth: float = Field(0.1, ge=0)
    hold_fraction: float = Field(0.8, gt=0, le=1)  # of evaluations from the drop on, stay down
    sustain_evals: int = Field(3, ge=1)  # a drop seen in fewer evaluations is not confirmed
    min_evals: int = Field(10, ge=3)


@dataclass
class HiddenProgressVerdict(Verdict):
    plateau_value: float | None = None
    plateau_start: int | None = None
    plateau_end: int | None = None
    drop_step: int | None = None
    plateau_length: int | None = None  # plateau end - plateau start
    drop_ratio: float | None = None  # (drop step - plateau end) / plateau length
    mass_start: float | None = None
    mass_before_drop: float | None = None
    mass_growth: float | None = None  # ratio
    final_loss: float | None = None
    final_val_acc: float | None = None


@PHENOMENA.register("hidden_progress")
class HiddenProgress(Detector):
    """Long loss plateau, sudden drop, and relevant-feature mass rising on the plateau."""

    Config = HiddenProgressConfig
    verdict_type = HiddenProgressVerdict
    key_metric = KeyMetric("mass_growth", "maximize")
    field_ranges = {"drop_step": NONNEGATIVE, "mass_growth": NONNEGATIVE}
    panels = (
        Panel("population loss: plateau, then a sudden drop", y=("val/loss",), group_by=(SWEPT,)),
        Panel("hidden progress: weight mass on the relevant coordinates",
              y=(Features.RELEVANT_MASS_TOP10, Features.RELEVANT_MASS)),
        Panel("test accuracy", y=(ACC,)),
    )

    @property
    def interval_fields(self) -> tuple[str, ...]:
        return ("drop_step", "mass_growth")

    def required(self, experiment: dict) -> list:
        return [self.config.loss_column, self.config.mass_column]

    def judge(self, metrics: pd.DataFrame, experiment: dict) -> Verdict:
        c = self.config
        steps, loss = series(metrics, c.loss_column)
        acc_steps, acc = series(metrics, ACC)
        fields = dict(final_loss=float(loss[-1]) if len(loss) else None,
                      final_val_acc=float(acc[-1]) if len(acc) else None)
        if len(loss) < c.min_evals:
            return self.undetermined(f"only {len(loss)} evaluations of {c.loss_column} (need "
                                     f"{c.min_evals})", **fields)
        smooth = rolling_median(loss)
        stretches = flat_stretches(smooth, c.plateau_band, c.reference_evals)
        found = None
        for a, b in stretches:
            level = float(np.median(loss[a:b + 1]))
            if level <= c.drop_fraction * float(smooth[:a + 1].max()):
                break  # the loss has already dropped: later stretches are after learning
            drop = self._drop(steps, smooth, acc_steps, acc, b, level)
            if drop is not None:
                found = a, b, level, drop
                break
        if found is None:
            learned = bool(len(acc)) and bool((acc >= c.acc_threshold).any())
            return self._no_drop(steps, smooth, stretches, learned, fields)
        a, b, level, drop = found
        start, end = float(steps[a]), float(steps[b])
        length = end - start
        ratio = (drop - end) / length if length > 0 else float("inf")
        m0 = value_at(*series(metrics, c.mass_column), start)
        m1 = value_at(*series(metrics, c.mass_column), end)
        growth = None if m0 is None or m1 is None else (
            m1 / m0 if m0 > 0 else (float("inf") if m1 > 0 else None))
        down = smooth <= c.drop_fraction * level
        if len(acc):
            down |= np.array([(value_at(acc_steps, acc, s) or 0.0) >= c.acc_threshold
                              for s in steps])
        after = down[steps >= drop]
        fields.update(plateau_value=level, plateau_start=int(start), plateau_end=int(end),
                      drop_step=int(drop), plateau_length=int(length), drop_ratio=ratio,
                      mass_start=m0, mass_before_drop=m1, mass_growth=growth)
        plateau = (f"{format_step(length)}-step plateau at loss {level:.3g}, drop at step "
                   f"{format_step(drop)}")
        mass = (f"relevant mass {m0:.3f}->{m1:.3f} ({100 * (growth - 1):+.0f}%) during the "
                "plateau" if growth is not None else "relevant mass unknown at the plateau")
        if len(after) < c.sustain_evals:
            return self.undetermined(f"the loss dropped at step {format_step(drop)}, in the "
                                     f"last {len(after)} evaluations: not confirmed yet",
                                     **fields)
        if after.mean() < c.hold_fraction:
            return self.verdict(Outcome.NOT_DETECTED,
                                f"the loss dropped at step {format_step(drop)} but stayed down "
                                f"in only {after.mean():.0%} of later evaluations (need "
                                f"{c.hold_fraction:.0%})",
                                "no hidden progress: the drop did not last", **fields)
        if length < c.min_plateau_steps:
            return self.verdict(Outcome.NOT_DETECTED,
                                f"plateau of {format_step(length)} steps (need "
                                f"{c.min_plateau_steps})",
                                f"no hidden progress: learned at step {format_step(drop)} "
                                f"without a long plateau (< {c.min_plateau_steps} steps)",
                                **fields)
        if ratio > c.max_drop_ratio:
            return self.verdict(Outcome.NOT_DETECTED,
                                f"the loss took {ratio:.1f}x the plateau's length to halve "
                                f"(sudden: <= {c.max_drop_ratio}x)",
                                f"no hidden progress: the loss declined gradually from step "
                                f"{format_step(end)} to {format_step(drop)}", **fields)
        if growth is None:
            return self.undetermined(f"{c.mass_column} not logged at the plateau's start and "
                                     f"end (steps {format_step(start)}, {format_step(end)})",
                                     **fields)
        if growth < 1 + c.min_mass_growth:
            return self.verdict(Outcome.NOT_DETECTED,
                                f"{mass} (need +{c.min_mass_growth:.0%})",
                                f"no hidden progress: {plateau}, but {mass}", **fields)
        return self.verdict(Outcome.DETECTED, f"{plateau}, {ratio:.2f}x its length later; {mass}",
                            f"hidden progress: {plateau}; {mass}", **fields)

    def _drop(self, steps, smooth, acc_steps, acc, end: int, level: float) -> float | None:
        """First step after index `end` where the loss fell to drop_fraction x level, or the
        accuracy reached acc_threshold."""
        c = self.config
        i = first(smooth <= c.drop_fraction * level, end + 1)
        candidates = [float(steps[i])] if i is not None else []
        j = first((acc >= c.acc_threshold) & (acc_steps > steps[end]))
        if j is not None:
            candidates.append(float(acc_steps[j]))
        return min(candidates) if candidates else None

    def _no_drop(self, steps, smooth, stretches, learned: bool, fields) -> Verdict:
        """No plateau with a drop after it: learned without one, or still on it."""
        c = self.config
        if stretches:
            # Every flat stretch a plateau (none after a fall) and no drop after any: the loss
            # is still on its plateau, or only starting to leave it, when the run stops.
            fell = any(float(np.median(smooth[a:b + 1])) <= c.drop_fraction * smooth[:a + 1].max()
                       for a, b in stretches)
            if not learned and not fell:
                return self.undetermined(f"still on the plateau at step {format_step(steps[-1])}"
                                         f" (loss {smooth[-1]:.3g}): the run stopped before a "
                                         "drop", **fields)
            return self.verdict(Outcome.NOT_DETECTED,
                                "the loss fell before any plateau formed",
                                "no hidden progress: learned without a plateau", **fields)
        return self.verdict(Outcome.NOT_DETECTED, "the loss never stayed flat for "
                            f"{c.reference_evals} evaluations", "no hidden progress: no plateau",
                            **fields)

    def figures(self, view) -> list:
        from dynamics_lab.phenomena.hidden_progress.figures import write_figures

        return write_figures(view)

    def sweep_lines(self, view) -> list[str]:
        from dynamics_lab.phenomena.growth import format_exponent
        from dynamics_lab.phenomena.hidden_progress.scaling import (
            DIM,
            K,
            learning_table,
            ordering,
            scaling_table,
        )

        if DIM not in view.axes or K not in view.axes:
            return []
        fits = scaling_table(learning_table(view))
        lines = [f"k={fit['k']}: {fit['quantity']} ~ n^{format_exponent(fit.to_dict())} over "
                 f"n = {fit['sizes']}, {fit['n']} runs (paper: {fit['paper']})"
                 for _, fit in fits.iterrows() if fit["n_sizes"] >= 2]
        if len(fits) and fits["k"].nunique() >= 2:
            order = ordering(fits)
            lines.append("exponent order in k: " + (
                "FLAG: contradicts the theory (the exponent should grow with k)"
                if order == "contradicts" else order))
        return lines
