"""SGD finds, then tunes features (Glasgow 2023): on XOR (y = +-x_i x_j on the hypercube) a
two-layer ReLU network from small initialization first searches, its output still ~0 so the
logistic loss sits at log 2 while the first layer turns toward the signal directions e_i +- e_j,
then tunes: the loss falls and the found features are balanced and grown.

Reads `loss_column` (default val/loss, the population loss on fresh samples) and
`alignment_column` (default signal/alignment, measure/signal_alignment.py). The loss is smoothed
by a running median of three evaluations.
  plateau        the loss starts within +-plateau_band of chance_loss (log 2: a zero output); a
                 network that starts with large outputs has no search phase to show
  search end     first evaluation from which the loss stays below (1 - leave_fraction) x chance
                 for sustain_evals evaluations: the search length is this step
  tune end       first evaluation from which the loss stays at or below tuned_fraction x chance
                 for sustain_evals evaluations: the tuning length is tune end - search end
  found          during the search the alignment (interpolated at the search end, as it is
                 sampled on its own schedule) rose from its first value a0 to at least
                 min_alignment_gain x a0, and by at least min_rise_share of its whole rise
                 (a0 -> its maximum): the features were found while the loss still sat at log 2
  target step    first evaluation from which the test error (1 - val/acc) stays at or below
                 target_error for sustain_evals evaluations; samples_to_target = target step x
                 the run's batch size (trainer.batch_size: online SGD draws a fresh batch each
                 step), the quantity Glasgow's sample-complexity bound is about
`detected` needs the plateau, a search of at least min_search_evals evaluations, the features
found during it, and the tuning. Undetermined: a column missing, fewer than min_evals
evaluations, or the run ended still searching or still tuning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import Field

from dynamics_lab.metric_names import Signal
from dynamics_lab.phenomena.base import NONNEGATIVE, Detector, Outcome, Verdict, format_step
from dynamics_lab.phenomena.curves import rolling_median, series, sustained
from dynamics_lab.phenomena.dashboard import SWEPT, KeyMetric, Panel
from dynamics_lab.registry import PHENOMENA
from dynamics_lab.schema import NamedSection

RANDOM = Signal.RANDOM_LEVEL


class XorConfig(NamedSection):
    loss_column: str = "val/loss"
    alignment_column: str = Signal.ALIGNMENT
    chance_loss: float = Field(math.log(2), gt=0)  # the logistic loss of a zero output
    plateau_band: float = Field(0.05, gt=0, lt=1)
    leave_fraction: float = Field(0.1, gt=0, lt=1)  # the search ends below (1 - this) x chance
    tuned_fraction: float = Field(0.1, gt=0, lt=1)  # tuned: loss <= this x chance
    min_alignment_gain: float = Field(2.0, ge=1)
    min_rise_share: float = Field(0.3, ge=0, le=1)
    min_search_evals: int = Field(3, ge=1)
    sustain_evals: int = Field(3, ge=1)
    min_evals: int = Field(10, ge=3)
    target_error: float = Field(0.05, gt=0, lt=0.5)  # test error that counts as learned


@dataclass
class XorVerdict(Verdict):
    search_end: int | None = None
    tune_end: int | None = None
    search_length: int | None = None  # steps from 0 to the search end
    tuning_length: int | None = None  # steps from the search end to the tune end
    initial_loss: float | None = None
    alignment_init: float | None = None
    alignment_at_search_end: float | None = None
    alignment_max: float | None = None
    rise_share: float | None = None  # of the alignment's whole rise, reached by the search end
    random_level: float | None = None  # the alignment of random weights, when logged
    target_step: int | None = None  # test error <= target_error from here on
    samples_to_target: int | None = None  # target_step x batch size
    batch_size: int | None = None
    final_loss: float | None = None
    final_val_acc: float | None = None


@PHENOMENA.register("xor")
class Xor(Detector):
    """Loss at log 2 while the signal alignment rises (search), then the loss falls (tuning)."""

    Config = XorConfig
    verdict_type = XorVerdict
    key_metric = KeyMetric("search_length", "minimize")
    field_ranges = {"samples_to_target": NONNEGATIVE, "search_length": NONNEGATIVE,
                    "tuning_length": NONNEGATIVE}
    panels = (
        Panel("population loss: at log 2 while searching, then tuned", y=("val/loss",),
              group_by=(SWEPT,), log_x=True),
        Panel("first-layer alignment with the signal directions e_i +- e_j",
              y=(Signal.ALIGNMENT, Signal.ALIGNMENT_TOP10, RANDOM), log_x=True),
        Panel("neuron scale |a_j| ||w_j||: small while searching", y=(Signal.NEURON_SCALE,),
              log_x=True, log_y=True),
    )

    @property
    def interval_fields(self) -> tuple[str, ...]:
        return ("samples_to_target", "search_length", "tuning_length")

    def required(self, experiment: dict) -> list:
        return [self.config.loss_column, self.config.alignment_column]

    def judge(self, metrics: pd.DataFrame, experiment: dict) -> Verdict:
        c = self.config
        steps, loss = series(metrics, c.loss_column)
        a_steps, align = series(metrics, c.alignment_column)
        acc_steps, acc = series(metrics, "val/acc")
        _, rand = series(metrics, RANDOM)
        fields = dict(final_loss=float(loss[-1]) if len(loss) else None,
                      final_val_acc=float(acc[-1]) if len(acc) else None,
                      random_level=float(rand[0]) if len(rand) else None,
                      **self._target(acc_steps, acc, experiment))
        if min(len(loss), len(align)) < c.min_evals:
            return self.undetermined(f"only {min(len(loss), len(align))} evaluations (need "
                                     f"{c.min_evals})", **fields)
        smooth = rolling_median(loss)
        chance = c.chance_loss
        a0, a_max = float(align[0]), float(align.max())
        fields.update(initial_loss=float(loss[0]), alignment_init=a0, alignment_max=a_max)
        if abs(loss[0] - chance) > c.plateau_band * chance:
            return self.verdict(
                Outcome.NOT_DETECTED,
                f"the loss started at {loss[0]:.3g}, not at chance {chance:.3g} "
                f"(+-{c.plateau_band:.0%}): the output was not small at init",
                "no find-then-tune: no search phase at chance loss", **fields)
        end_i = sustained(smooth < (1 - c.leave_fraction) * chance, c.sustain_evals)
        if end_i is None:
            return self.undetermined(f"still searching at step {format_step(steps[-1])} "
                                     f"(loss {smooth[-1]:.3g})", **fields)
        search_end = float(steps[end_i])
        # Interpolated: the alignment is sampled on its own (log-spaced) schedule.
        a_end = float(np.interp(search_end, a_steps, align))
        share = (a_end - a0) / (a_max - a0) if a_max > a0 else 0.0
        fields.update(search_end=int(search_end), search_length=int(search_end),
                      alignment_at_search_end=a_end, rise_share=share)
        tune_i = sustained(smooth <= c.tuned_fraction * chance, c.sustain_evals, end_i)
        if tune_i is not None:
            tune_end = float(steps[tune_i])
            fields.update(tune_end=int(tune_end), tuning_length=int(tune_end - search_end))
        search = (f"loss at chance for {format_step(search_end)} steps ({end_i} evaluations), "
                  f"alignment {a0:.3f}->{a_end:.3f} "
                  f"({share:.0%} of its rise to {a_max:.3f})")
        if end_i < c.min_search_evals:
            return self.verdict(
                Outcome.NOT_DETECTED,
                f"the loss left chance after {end_i} evaluations (need {c.min_search_evals})",
                f"no find-then-tune: the loss fell at once (step {format_step(search_end)})",
                **fields)
        if a_end < c.min_alignment_gain * a0 or share < c.min_rise_share:
            return self.verdict(
                Outcome.NOT_DETECTED,
                f"{search}: the features were not found during the search (need "
                f"{c.min_alignment_gain}x and {c.min_rise_share:.0%} of the rise)",
                f"no find-then-tune: the loss left chance at step {format_step(search_end)} "
                "before the signal alignment rose", **fields)
        if tune_i is None:
            return self.undetermined(f"{search}; still tuning at step {format_step(steps[-1])} "
                                     f"(loss {smooth[-1]:.3g} > {c.tuned_fraction} x chance)",
                                     **fields)
        tuning = fields["tuning_length"]
        return self.verdict(
            Outcome.DETECTED, f"{search}; tuned to {c.tuned_fraction} x chance "
            f"{format_step(tuning)} steps later",
            f"found then tuned: search {format_step(search_end)} steps (alignment "
            f"{a0:.2f}->{a_end:.2f}), tuning {format_step(tuning)} steps", **fields)

    def _target(self, steps, acc, experiment: dict) -> dict:
        """When the test error reaches target_error for good, in steps and in samples."""
        c = self.config
        batch = (experiment.get("trainer") or {}).get("batch_size")
        out = dict(target_step=None, samples_to_target=None,
                   batch_size=int(batch) if batch else None)
        if len(acc) >= c.sustain_evals:
            i = sustained(1 - acc <= c.target_error, c.sustain_evals)
            if i is not None:
                out["target_step"] = int(steps[i])
                if batch:
                    out["samples_to_target"] = int(steps[i]) * int(batch)
        return out

    def figures(self, view) -> list:
        from dynamics_lab.phenomena.xor.figures import write_figures

        return write_figures(view)

    def sweep_lines(self, view) -> list[str]:
        from dynamics_lab.phenomena.xor.scaling import (
            DIM,
            distinguishes,
            form_fits,
            tuned_points,
            tuned_table,
        )

        if DIM not in view.axes:
            return []
        tuned = tuned_table(view.table)
        if not len(tuned):
            return []
        lines = [f"tuned step size per d (grid {tuned['lr_grid'].iloc[0]}): "
                 + ", ".join(f"d={r[DIM]:g}: {r['tuned_lr']:g}"
                             + (" (grid edge)" if r["at_grid_edge"] else "")
                             for _, r in tuned.iterrows())]
        fits = form_fits(tuned_points(view.table, tuned))
        if len(fits):
            power = fits[fits["form"] == "d^b"].iloc[0]
            lines.append(f"samples to {self.config.target_error:g} test error ~ d^"
                         f"{power['exponent']:.2f} [{power['ci_low']:.2f}, "
                         f"{power['ci_high']:.2f}] over {power['n']} runs; "
                         f"{distinguishes(fits)}")
        return lines
