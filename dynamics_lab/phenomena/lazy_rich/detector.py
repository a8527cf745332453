"""Grokking as the transition from lazy to rich training (Kumar et al. 2023; lazy vs rich:
Chizat & Bach 2019): the train loss falls while the test loss sits on its level, and the test
loss drops only later, as the kernel moves and lines up with the target.

Reads `train/loss`, `val/loss` and, when logged, `ntk/distance_init`, `ntk/alignment` and
`kernel/lazy_test_loss` (measure/kernel_baseline.py):
  test level        the test loss once the initial transient is over: the median of the first
                    flat stretch (>= reference_evals evaluations within +-plateau_band) when it
                    starts within the first transient_fraction of the run and no later than
                    the fit step, else the first value (a lazy network fits the kernel-
                    learnable part in a few steps: not feature learning; a stretch after the
                    fit is the floor reached as the train loss fell, not a plateau)
  fit step          first step train/loss <= fit_fraction x its initial value
  test drop step    first step val/loss <= the test level / drop_factor
  grokked           Kumar et al.'s definition: the test loss is still on its level (within
                    +-plateau_band) at the fit step, and drops only min_delay_ratio x later
  shared level      cross_level (an absolute loss; Kumar et al. read MSE 0.1), else
                    cross_fraction x the initial test loss; train and test cross steps: when
                    each first reaches it; step_gap = test - train crossing (the paper's
                    number), log_delay = log10(test / train crossing) in decades
  alignment rise    first step the alignment is half-way to its maximum, when it rose by >=
                    min_alignment_rise; coincides: |rise - drop| <= coincidence_tolerance x
                    drop; alignment_jump: its change while the test loss falls from its level
                    to the shared level, jump_share: that change over its whole rise
  regime            rich: the test loss dropped and the kernel moved >= lazy_distance; lazy:
                    neither; intermediate: one of them; unknown: no kernel distance logged
  lazy baseline     kernel/lazy_test_loss, the test loss of kernel regression with the initial
                    NTK; below_lazy: the run's lowest test loss under it (features learned)
`detected` means grokked; not_detected: the test loss fell with (or before) the train loss;
undetermined: too few evaluations, no train fit, or the test loss still on its level at the
end (it may drop later, or never: the lazy limit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import Field

from dynamics_lab.metric_names import NTK, Kernel
from dynamics_lab.phenomena.base import NONNEGATIVE, Detector, Outcome, Verdict, format_step
from dynamics_lab.phenomena.curves import first, flat_stretches, series, value_at
from dynamics_lab.phenomena.dashboard import SWEPT, KeyMetric, Panel, verdict_key
from dynamics_lab.registry import PHENOMENA
from dynamics_lab.schema import NamedSection

TRAIN, VAL = "train/loss", "val/loss"
ALIGNMENT, DISTANCE = NTK.ALIGNMENT, NTK.DISTANCE_INIT
LAZY = Kernel.LAZY_TEST_LOSS


class LazyRichConfig(NamedSection):
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
    cross_level: float | None = Field(None, gt=0)  # the shared level as a loss, instead


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
    step_gap: int | None = None  # test crossing - train crossing, in steps
    log_delay: float | None = None  # log10(test crossing / train crossing), in decades
    alignment_jump: float | None = None  # NTK alignment change while the test loss falls
    jump_share: float | None = None  # alignment_jump over the alignment's whole rise
    lazy_test_loss: float | None = None  # kernel regression with the initial NTK
    min_val_loss: float | None = None
    below_lazy: bool | None = None  # the lowest test loss under the lazy baseline
    final_train_loss: float | None = None
    final_val_loss: float | None = None


@PHENOMENA.register("lazy_rich")
class LazyRich(Detector):
    """Grokked when the test loss stays on its level while the train loss fits, then drops."""

    Config = LazyRichConfig
    verdict_type = LazyRichVerdict
    key_metric = KeyMetric("delay_ratio", "maximize")
    field_ranges = {"delay_ratio": NONNEGATIVE, "test_loss_ratio": NONNEGATIVE,
                    "kernel_distance": NONNEGATIVE}
    panels = (
        Panel("train and test loss", y=(TRAIN, VAL, LAZY), group_by=(SWEPT,), log_y=True),
        Panel("kernel: NTK-label alignment and distance from init", y=(ALIGNMENT, DISTANCE)),
    )

    @property
    def interval_fields(self) -> tuple[str, ...]:
        return ("delay_ratio", "step_gap", "log_delay", "test_loss_ratio", "kernel_distance")

    def required(self, experiment: dict) -> list:
        return [TRAIN, VAL]

    def judge(self, metrics: pd.DataFrame, experiment: dict) -> Verdict:
        c = self.config
        t_steps, train = series(metrics, TRAIN)
        v_steps, val = series(metrics, VAL)
        _, lazy = series(metrics, LAZY)
        finals = dict(final_train_loss=float(train[-1]) if len(train) else None,
                      final_val_loss=float(val[-1]) if len(val) else None,
                      lazy_test_loss=float(lazy[0]) if len(lazy) else None)
        if min(len(train), len(val)) < c.min_evals:
            return self.undetermined(f"only {min(len(train), len(val))} evaluations (need "
                                     f"{c.min_evals})", **finals)
        fit_i = first(train <= c.fit_fraction * train[0])
        fit = float(t_steps[fit_i]) if fit_i is not None else None
        start, level = self._level(v_steps, val, fit)
        drop_i = first(val <= level / c.drop_factor, start)
        drop = float(v_steps[drop_i]) if drop_i is not None else None
        low = float(np.nanmin(val))
        ratio = level / low if low > 0 else None
        a_steps, align = series(metrics, ALIGNMENT)
        a0 = float(align[0]) if len(align) else None
        a_max = float(align.max()) if len(align) else None
        rise = None
        if len(align) and a_max - a0 >= c.min_alignment_rise:
            rise = float(a_steps[first(align >= a0 + (a_max - a0) / 2)])
        _, dist = series(metrics, DISTANCE)
        distance = float(dist.max()) if len(dist) else None
        delay = drop / max(fit, 1.0) if fit is not None and drop is not None else None
        at_fit = value_at(v_steps, val, fit) if fit is not None else None
        on_level = at_fit is not None and abs(at_fit - level) <= c.plateau_band * level
        grokked = bool(delay is not None and drop > fit and delay >= c.min_delay_ratio
                       and on_level)
        crossing = self._crossings(t_steps, train, v_steps, val, a_steps, align, level)
        coincides = (abs(rise - drop) <= c.coincidence_tolerance * drop
                     if rise is not None and drop is not None else None)
        if distance is None:
            regime = "unknown"
        elif drop is not None and distance >= c.lazy_distance:
            regime = "rich"
        elif drop is None and distance < c.lazy_distance:
            regime = "lazy"
        else:
            regime = "intermediate"
        below = (low < finals["lazy_test_loss"] if finals["lazy_test_loss"] is not None
                 else None)
        fields = dict(regime=regime, fit_step=_int(fit), test_level=level,
                      test_drop_step=_int(drop), test_loss_ratio=ratio, grokked=grokked,
                      delay_ratio=delay, alignment_init=a0, alignment_max=a_max,
                      alignment_rise_step=_int(rise), coincides=coincides,
                      kernel_distance=distance, min_val_loss=low, below_lazy=below,
                      **crossing, **finals)
        summary = self.summary(regime, fit, drop, ratio, grokked, delay, a0, a_max, rise,
                               coincides, distance) + self._delay_line(crossing)
        if finals["lazy_test_loss"] is not None:
            summary += (f"; lowest test loss {low:.3g} vs {finals['lazy_test_loss']:.3g} of "
                        "kernel regression with the initial NTK")
        if fit is None:
            if drop is not None:
                return self.verdict(Outcome.NOT_DETECTED,
                                    f"the test loss dropped {c.drop_factor}x at step "
                                    f"{format_step(drop)} before the train loss fit "
                                    f"({c.fit_fraction} x its start)", summary, **fields)
            return self.undetermined(f"the train loss never fell to {c.fit_fraction} x its "
                                     f"start by step {format_step(t_steps[-1])}", **fields)
        if drop is None:
            return self.verdict(Outcome.UNDETERMINED,
                                f"train fit at step {format_step(fit)}, the test loss still "
                                f"within {c.drop_factor}x of its level {level:.3g} at step "
                                f"{format_step(v_steps[-1])}: it may drop later, or never "
                                "(lazy)", f"undetermined: {summary}", **fields)
        if grokked:
            return self.verdict(Outcome.DETECTED,
                                f"test loss on its level {level:.3g} at the train fit (step "
                                f"{format_step(fit)}), dropped {c.drop_factor}x {delay:.1f}x "
                                f"later (need {c.min_delay_ratio}x)", summary, **fields)
        where = (f"{at_fit:.3g}, off its level {level:.3g}" if not on_level
                 else f"on its level {level:.3g}")
        return self.verdict(Outcome.NOT_DETECTED,
                            f"the test loss dropped at step {format_step(drop)}, "
                            f"{delay:.2f}x the train fit step {format_step(fit)} (need "
                            f"{c.min_delay_ratio}x; test loss at the fit {where})", summary,
                            **fields)

    def _crossings(self, t_steps, train, v_steps, val, a_steps, align, level) -> dict:
        """Kumar et al.'s delay: when train and test loss first reach a shared level; and the
        alignment's change while the test loss falls from its `level` to the shared one."""
        c = self.config
        shared = c.cross_level if c.cross_level is not None else c.cross_fraction * float(val[0])
        i, j = first(train <= shared), first(val <= shared)
        out = dict(train_cross_step=None, test_cross_step=None, step_gap=None, log_delay=None,
                   alignment_jump=None, jump_share=None)
        if i is None or j is None:
            out["train_cross_step"] = _int(t_steps[i]) if i is not None else None
            out["test_cross_step"] = _int(v_steps[j]) if j is not None else None
            return out
        t_train, t_test = float(t_steps[i]), float(v_steps[j])
        out.update(train_cross_step=int(t_train), test_cross_step=int(t_test),
                   step_gap=int(t_test - t_train),
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
        line = (f"; test loss at the shared level {format_step(crossing['step_gap'])} steps "
                f"({crossing['log_delay']:.2f} decades) after the train loss (steps "
                f"{format_step(crossing['train_cross_step'])} -> "
                f"{format_step(crossing['test_cross_step'])})")
        if crossing["alignment_jump"] is not None:
            line += f"; alignment {crossing['alignment_jump']:+.3g} as the test loss fell"
            if crossing["jump_share"] is not None:
                line += f" ({crossing['jump_share']:.0%} of its rise)"
        return line

    def _level(self, steps: np.ndarray, val: np.ndarray,
               fit: float | None = None) -> tuple[int, float]:
        """(index where the level starts, the test loss level after the initial transient)."""
        c = self.config
        for a, b in flat_stretches(val, c.plateau_band, c.reference_evals):
            # A first stretch that starts only after the train loss fit is the floor after an
            # early fall (the test loss fell with the train loss), not a plateau before a drop.
            if (steps[a] - steps[0] <= c.transient_fraction * (steps[-1] - steps[0])
                    and (fit is None or steps[a] <= fit)):
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

        return write_figures(view, self.config.min_delay_ratio)

    def sweep_lines(self, view) -> list[str]:
        """Kumar et al.'s step gap at the shared level along the first swept key (mean over
        seeds), and the delay ratio of the raw losses."""
        table = view.table
        if not view.axes or verdict_key("step_gap") not in table:
            return []
        axis = view.axes[0]
        lines = []
        for field, what in (("step_gap", "step gap, test vs train at the shared level"),
                            ("delay_ratio", "test drop step / train fit step")):
            if verdict_key(field) not in table:
                continue
            means = pd.to_numeric(table[verdict_key(field)], errors="coerce").groupby(
                table[axis]).mean()
            shown = ", ".join(f"{axis.rsplit('.', 1)[-1]}={k:g}: "
                              + ("-" if np.isnan(v) else f"{v:.3g}") for k, v in means.items())
            lines.append(f"{what} (mean over seeds): {shown}")
        return lines


def _int(step: float | None) -> int | None:
    return None if step is None else int(step)
