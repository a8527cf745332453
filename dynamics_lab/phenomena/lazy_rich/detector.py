"""Lazy vs rich training (Chizat & Bach 2019) and grokking as the lazy-to-rich transition
(Kumar et al. 2023): does the kernel move and line up with the target when the test loss falls?

Reads `train/loss`, `val/loss`, `ntk/distance_init` and, when logged, `ntk/alignment`:
  test level        the test loss once the initial transient is over: the median of the first
                    flat stretch (>= reference_evals evaluations within +-plateau_band) when it
                    starts within the first transient_fraction of the run, else the first
                    value. Even a lazy network fits the kernel-learnable part of the target in
                    a few steps; that fall is not feature learning.
  fit step          first step train/loss <= fit_fraction x its initial value
  test drop step    first step val/loss <= the test level / drop_factor
  alignment rise    first step the alignment is half-way from its initial value to its maximum,
                    when it rose by at least min_alignment_rise
  regime            rich: the test loss dropped and the kernel moved (distance >= lazy_distance);
                    lazy: the kernel stayed within lazy_distance and the test loss did not drop;
                    intermediate: anything else; unknown: the kernel distance was not logged,
                    or was still below lazy_distance when last logged, before the second half
                    of the run (the kernel may yet move: no lazy verdict)
  grokked           the test drop came min_delay_ratio x after the fit step, with the test loss
                    still on its level at the fit step; or the log-time delay below
  coincides         |alignment rise - test drop| <= coincidence_tolerance x test drop step
  log-time delay    Kumar et al.'s measure: the train and the test loss each first reach the
                    shared level cross_fraction x the initial test loss; log_delay =
                    log10(test crossing / train crossing), in decades (their phase diagram uses
                    MSE 0.1 for an initial ~0.73); alignment_jump is the NTK alignment's change
                    while the test loss falls, from its last evaluation on its level (within
                    plateau_band) to the test crossing (interpolated), and jump_share that
                    change over the alignment's whole rise: the kernel lining up with the
                    target as the test loss drops
  grokked           (as above) or log_delay >= min_log_delay
`detected` means the rich regime; an unknown regime is `undetermined`, never a default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from dynamics_lab.phenomena.base import Detector, Outcome, Verdict, format_step
from dynamics_lab.phenomena.curves import first, flat_stretches, series, value_at
from dynamics_lab.phenomena.dashboard import SWEPT, KeyMetric, Panel
from dynamics_lab.registry import PHENOMENA
from dynamics_lab.schema import NamedSection

TRAIN, VAL = "train/loss", "val/loss"
ALIGNMENT, DISTANCE = "ntk/alignment", "ntk/distance_init"


class LazyRichConfig(NamedSection):
    name: Literal["lazy_rich"] = "lazy_rich"
    fit_fraction: float = Field(0.05, gt=0, lt=1)
    drop_factor: float = Field(3.0, gt=1)
    min_alignment_rise: float = Field(0.05, gt=0)
    lazy_distance: float = Field(0.01, gt=0)
    coincidence_tolerance: float = Field(0.5, ge=0)
    min_delay_ratio: float = Field(2.0, ge=1)
    plateau_band: float = Field(0.1, gt=0, lt=1)
    reference_evals: int = Field(3, ge=2)
    transient_fraction: float = Field(0.1, ge=0, lt=1)
    min_evals: int = Field(10, ge=3)
    cross_fraction: float = Field(0.14, gt=0, lt=1)  # the shared level, x the initial test loss
    min_log_delay: float = Field(0.3, gt=0)  # decades between the train and test crossings


@dataclass
class LazyRichVerdict(Verdict):
    regime: str = "unknown"
    fit_step: int | None = None
    test_level: float | None = None  # the test loss after the initial transient
    test_drop_step: int | None = None
    test_loss_ratio: float | None = None  # test level over the minimum test loss
    grokked: bool = False
    delay_ratio: float | None = None
    alignment_init: float | None = None
    alignment_max: float | None = None
    alignment_rise_step: int | None = None
    coincides: bool | None = None
    kernel_distance: float | None = None  # the largest ntk/distance_init seen
    train_cross_step: int | None = None  # train loss first at cross_fraction x initial test loss
    test_cross_step: int | None = None  # test loss first at that level
    log_delay: float | None = None  # log10(test crossing / train crossing), in decades
    alignment_jump: float | None = None  # NTK alignment change while the test loss falls
    jump_share: float | None = None  # alignment_jump over the alignment's whole rise
    final_train_loss: float | None = None
    final_val_loss: float | None = None


@PHENOMENA.register("lazy_rich")
class LazyRich(Detector):
    """Rich when the test loss drops and the kernel moves; lazy when the kernel stays put."""

    Config = LazyRichConfig
    verdict_type = LazyRichVerdict
    key_metric = KeyMetric("test_loss_ratio", "maximize")
    panels = (
        Panel("train and test loss", y=(TRAIN, VAL), group_by=(SWEPT,), log_y=True),
        Panel("kernel: NTK-label alignment and distance from init", y=(ALIGNMENT, DISTANCE)),
    )

    @property
    def interval_fields(self) -> tuple[str, ...]:
        return ("test_loss_ratio", "kernel_distance", "log_delay")

    def required(self, experiment: dict) -> list:
        return [TRAIN, VAL]

    def judge(self, metrics: pd.DataFrame, experiment: dict) -> Verdict:
        c = self.config
        t_steps, train = series(metrics, TRAIN)
        v_steps, val = series(metrics, VAL)
        finals = dict(final_train_loss=float(train[-1]) if len(train) else None,
                      final_val_loss=float(val[-1]) if len(val) else None)
        if min(len(train), len(val)) < c.min_evals:
            return self.undetermined(f"only {min(len(train), len(val))} evaluations (need "
                                     f"{c.min_evals})", **finals)
        fit_i = first(train <= c.fit_fraction * train[0])
        fit = float(t_steps[fit_i]) if fit_i is not None else None
        start, level = self._level(v_steps, val)
        drop_i = first(val <= level / c.drop_factor, start)
        drop = float(v_steps[drop_i]) if drop_i is not None else None
        ratio = level / float(val.min()) if val.min() > 0 else None
        a_steps, align = series(metrics, ALIGNMENT)
        a0 = float(align[0]) if len(align) else None
        a_max = float(align.max()) if len(align) else None
        rise = None
        if len(align) and a_max - a0 >= c.min_alignment_rise:
            rise = float(a_steps[first(align >= a0 + (a_max - a0) / 2)])
        d_steps, dist = series(metrics, DISTANCE)
        distance = float(dist.max()) if len(dist) else None
        # A kernel still at rest at its last measurement may move later (the lazy-to-rich
        # transition comes late): it is static only if followed into the run's second half.
        followed = bool(len(dist)) and d_steps[-1] >= (v_steps[0] + v_steps[-1]) / 2
        delay = drop / max(fit, 1.0) if fit is not None and drop is not None else None
        at_fit = value_at(v_steps, val, fit) if fit is not None else None
        grokked = bool(delay is not None and drop > fit and delay >= c.min_delay_ratio
                       and at_fit is not None and at_fit >= (1 - c.plateau_band) * level)
        crossing = self._crossings(t_steps, train, v_steps, val, a_steps, align, level)
        grokked = grokked or (crossing["log_delay"] or 0.0) >= c.min_log_delay
        coincides = (abs(rise - drop) <= c.coincidence_tolerance * drop
                     if rise is not None and drop is not None else None)
        if distance is None or (distance < c.lazy_distance and not followed):
            regime = "unknown"
        elif drop is not None and distance >= c.lazy_distance:
            regime = "rich"
        elif drop is None and distance < c.lazy_distance:
            regime = "lazy"
        else:
            regime = "intermediate"
        fields = dict(regime=regime, fit_step=_int(fit), test_level=level,
                      test_drop_step=_int(drop), test_loss_ratio=ratio, grokked=grokked,
                      delay_ratio=delay, alignment_init=a0, alignment_max=a_max,
                      alignment_rise_step=_int(rise), coincides=coincides,
                      kernel_distance=distance, **crossing, **finals)
        summary = self.summary(regime, fit, drop, ratio, grokked, delay, a0, a_max, rise,
                               coincides, distance) + self._delay_line(crossing)
        fell = f"test loss fell {ratio:.1f}x from its level {level:.3g}" if ratio else "no fall"
        if regime == "unknown":
            why = (f"{DISTANCE} not logged" if distance is None else
                   f"{DISTANCE} last logged at step {format_step(d_steps[-1])} of "
                   f"{format_step(v_steps[-1])}, still below {c.lazy_distance}")
            return self.verdict(Outcome.UNDETERMINED, f"{why}: the regime is unknown ({fell})",
                                f"undetermined: {summary}", **fields)
        moved = f"kernel moved {distance:.3g} (lazy below {c.lazy_distance})"
        outcome = Outcome.DETECTED if regime == "rich" else Outcome.NOT_DETECTED
        return self.verdict(outcome, f"{regime}: {fell} (drop: {c.drop_factor}x), {moved}",
                            summary, **fields)

    def _crossings(self, t_steps, train, v_steps, val, a_steps, align, level) -> dict:
        """Kumar et al.'s delay: when train and test loss first reach a shared level; and the
        alignment's change while the test loss falls from its `level` to the shared one."""
        c = self.config
        shared = c.cross_fraction * float(val[0])
        i, j = first(train <= shared), first(val <= shared)
        out = dict(train_cross_step=None, test_cross_step=None, log_delay=None,
                   alignment_jump=None, jump_share=None)
        if i is None or j is None:
            out["train_cross_step"] = _int(t_steps[i]) if i is not None else None
            return out
        t_train, t_test = float(t_steps[i]), float(v_steps[j])
        out.update(train_cross_step=int(t_train), test_cross_step=int(t_test),
                   log_delay=float(np.log10(max(t_test, 1.0) / max(t_train, 1.0))))
        if len(align) >= 2:
            on_level = np.flatnonzero(val[:j + 1] >= (1 - c.plateau_band) * level)
            left = float(v_steps[on_level[-1]]) if len(on_level) else float(v_steps[0])
            jump = float(np.interp(t_test, a_steps, align) - np.interp(left, a_steps, align))
            rise = float(align.max() - align[0])
            out.update(alignment_jump=jump, jump_share=jump / rise if rise > 0 else None)
        return out

    @staticmethod
    def _delay_line(crossing: dict) -> str:
        if crossing["log_delay"] is None:
            return ""
        line = (f"; test loss at the shared level {crossing['log_delay']:.2f} decades after "
                f"the train loss (steps {format_step(crossing['train_cross_step'])} -> "
                f"{format_step(crossing['test_cross_step'])})")
        if crossing["alignment_jump"] is not None:
            line += f"; alignment {crossing['alignment_jump']:+.3g} as the test loss fell"
            if crossing["jump_share"] is not None:
                line += f" ({crossing['jump_share']:.0%} of its rise)"
        return line

    def _level(self, steps: np.ndarray, val: np.ndarray) -> tuple[int, float]:
        """(index where the level starts, the test loss level after the initial transient)."""
        c = self.config
        for a, b in flat_stretches(val, c.plateau_band, c.reference_evals):
            if steps[a] - steps[0] <= c.transient_fraction * (steps[-1] - steps[0]):
                return a, float(np.median(val[a:b + 1]))
            break
        return 0, float(val[0])

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
            align = f"alignment {a0:.3g}->{a_max:.3g}"
            if rise is not None:
                align += f" rising at step {format_step(rise)}"
                if coincides is not None:
                    align += " (coincides with the drop)" if coincides else " (not at the drop)"
            parts.append(align)
        if distance is not None:
            parts.append(f"kernel moved {distance:.3g} from init")
        return parts[0] + " " + ", ".join(parts[1:])

    def figures(self, view) -> list:
        from dynamics_lab.phenomena.lazy_rich.figures import write_figures

        return write_figures(view)

    def sweep_lines(self, view) -> list[str]:
        """Kumar et al.'s delay along the first swept key (mean over seeds)."""
        table = view.table
        if not view.axes or "log_delay" not in table:
            return []
        axis = view.axes[0]
        delays = pd.to_numeric(table["log_delay"], errors="coerce").groupby(table[axis]).mean()
        shown = ", ".join(f"{axis.rsplit('.', 1)[-1]}={k:g}: "
                          + ("-" if np.isnan(v) else f"{v:.2f}") for k, v in delays.items())
        return [f"grokking delay in log-time (decades, test vs train at the shared level): "
                f"{shown}"]


def _int(step: float | None) -> int | None:
    return None if step is None else int(step)
