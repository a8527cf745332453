"""Stepwise learning: from small init, a linear network learns the teacher's modes one at a time.

Spectral verdict (from `modes/strength_i`, measure/modes.py): mode i's step is where its strength
u_i^T W v_i first reaches `learned_fraction` of its target s_i; its rise is the 10% -> 90% window.
Rises that overlap form one step; the run is stepwise when >= 2 modes are learned and no two rises
overlap. A second opinion reads only the loss (phenomena/plateaus.py); the two counts are reported
side by side (`spectral_steps`, `loss_steps`, `agree`), never reconciled.

Theory (Saxe et al. 2014), for W = W2 W1, white inputs and loss 0.5 ||W - W*||_F^2, so time in
gradient flow is tau = lr * step. For mode (u, s, v) let a = W2^T u and b = W1 v. Ignoring the other
modes, da/dtau = (s - a.b) b and db/dtau = (s - a.b) a. So c = a + b grows and a - b shrinks by the
same factor exp(+-int (s - m)), and once a ~ b the strength m = a.b follows the logistic ODE
    dm/dtau = 2 m (s - m),   m(tau) = s / (1 + (s/m0 - 1) exp(-2 s tau)),   m0 = |c0|^2 / 4,
which is half-way at tau_half = ln(s/m0 - 1) / (2 s). The model's init (models/linear.py) gives
E|a0|^2 = E|b0|^2 = u0^2 (u0 = init_scale) with a0, b0 independent, so m0 = u0^2 / 2. A balanced,
aligned init a0 = b0 with |a0| = u0 would give m0 = u0^2 instead. To leading order
t_half ~ ln(2 s / u0^2) / (2 lr s) = ln(sqrt(2 s) / u0) / (lr s). Gradient descent multiplies |c| by
(1 + lr s) per step, not exp(lr s), so the prediction in steps is
    t_half = ln(s / m0 - 1) / (2 ln(1 + lr s)),
which is exact in the exponential phase and tends to the flow value as lr -> 0.
Depth L >= 3 (a heuristic, labelled so): balanced per-layer amplitudes give
dm/dtau = L m^(2 - 2/L) (s - m), integrated numerically from m0 = (u0 / sqrt 2)^L by analogy with
L = 2. Random deep inits spread widely from seed to seed. Depth 1: every mode is half-learned at
ln 2 / -ln(1 - lr), all at once, so there are no steps. No prediction is made for a mode whose
m0 exceeds s / 10: the init is not small for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field
from scipy.integrate import quad

from dynamics_lab.phenomena.base import Detector, Verdict
from dynamics_lab.phenomena.plateaus import loss_steps
from dynamics_lab.registry import PHENOMENA
from dynamics_lab.schema import NamedSection


class StepwiseConfig(NamedSection):
    name: Literal["stepwise"] = "stepwise"
    learned_fraction: float = Field(0.5, gt=0, lt=1)  # a mode's step: strength reaches this * s
    rise_low: float = Field(0.1, gt=0, lt=1)  # its rise window runs from rise_low * s ...
    rise_high: float = Field(0.9, gt=0, lt=1)  # ... to rise_high * s
    min_slope: float = Field(1.0, gt=0)  # loss detector: drop = -dlogL/dlog(step) above this
    min_drop: float = Field(1.25, gt=1)  # loss detector: a drop shrinks the loss at least this
    min_gap: float = Field(0.05, ge=0)  # loss detector: plateaus shorter (decades) merge drops
    min_share: float = Field(1e-3, ge=0, lt=1)  # loss detector: least share of the decrease
    loss_metric: str = "auto"  # auto: train/batch_loss, else train/loss


@dataclass
class StepwiseVerdict(Verdict):
    n_modes: int
    spectral_steps: int | None  # groups of overlapping rises
    loss_steps: int  # drops of the loss curve
    agree: bool | None
    separated: bool | None
    in_order: bool | None  # learned in order of decreasing target
    order: list | None  # mode indices by step time
    step_times: list | None  # per mode, None where never learned
    rise_starts: list | None
    rise_ends: list | None
    theory_times: list | None
    theory_ratio: list | None  # observed / predicted step time
    theory: str
    loss_step_times: list
    plateaus: list


def crossing(steps: np.ndarray, values: np.ndarray, level: float) -> float | None:
    """First step where values reach `level`, linearly interpolated; None if never."""
    hit = np.nonzero(values >= level)[0]
    if not len(hit):
        return None
    k = int(hit[0])
    if k == 0:
        return float(steps[0])
    v0, v1 = values[k - 1], values[k]
    return float(steps[k - 1] + (level - v0) / (v1 - v0) * (steps[k] - steps[k - 1]))


def theory_half_times(singular_values: list[float], lr: float, init_scale: float,
                      depth: int) -> list[float | None]:
    """Predicted step of each mode's half-way point (module docstring).

    None where the init is not small for that mode (m0 > s / 10): there is no plateau to predict.
    """
    out: list[float | None] = []
    for s in singular_values:
        if depth == 1:
            out.append(math.log(2) / -math.log(1 - lr) if lr < 1 else None)
            continue
        m0 = (init_scale / math.sqrt(2)) ** depth
        if m0 > s / 10:
            out.append(None)
        elif depth == 2:
            out.append(math.log(s / m0 - 1) / (2 * math.log1p(lr * s)))
        else:
            # In z = ln m the integrand is smooth: dtau = m^(2/L - 1) / (L (s - m)) dz.
            def rate(z: float, s: float = s) -> float:
                m = math.exp(z)
                return m ** (2 / depth - 1) / (depth * (s - m))

            out.append(quad(rate, math.log(m0), math.log(s / 2), limit=200)[0] / lr)
    return out


def theory_for(experiment: dict, targets: list[float]) -> tuple[list | None, str]:
    """Predicted step times if the run is plain full-batch GD on a deep linear net; else why not."""
    model, optim = experiment.get("model") or {}, experiment.get("optim") or {}
    trainer = experiment.get("trainer") or {}
    if model.get("name") != "deep_linear":
        return None, "none (theory covers deep_linear models)"
    momentum = 0.0 if optim.get("name") == "gd" else optim.get("momentum", 0.0)
    if optim.get("name") not in ("gd", "sgd") or momentum or optim.get("weight_decay"):
        return None, "none (theory covers plain gradient descent)"
    if trainer.get("batch_size") is not None:
        return None, "none (theory covers full-batch gradient descent)"
    depth = int(model.get("depth", 2))
    times = theory_half_times(targets, float(optim["lr"]), float(model["init_scale"]), depth)
    label = {1: "depth 1: all modes at once", 2: "two-layer logistic, m0 = u0^2/2"}.get(
        depth, f"balanced depth-{depth} ODE (heuristic m0)")
    return times, label


def _fmt(values) -> str:
    return ", ".join("-" if v is None else f"{v:,.0f}".replace(",", " ") for v in values)


def _loss_column(metrics: pd.DataFrame, name: str) -> str | None:
    if name != "auto":
        return name if name in metrics else None
    return next((c for c in ("train/batch_loss", "train/loss") if c in metrics), None)


def _mode_columns(metrics: pd.DataFrame, prefix: str) -> list[str]:
    cols = [c for c in metrics if c.startswith(prefix) and c[len(prefix):].isdigit()]
    return sorted(cols, key=lambda c: int(c[len(prefix):]))


@PHENOMENA.register("stepwise")
class Stepwise(Detector):
    """Detected when >= 2 teacher modes are learned in non-overlapping rises."""

    Config = StepwiseConfig

    def detect(self, metrics: pd.DataFrame, config: StepwiseConfig, experiment: dict) -> Verdict:
        columns = _mode_columns(metrics, "modes/strength_") or _mode_columns(metrics, "modes/sv_")
        task = experiment.get("task") or {}
        targets = list(task.get("singular_values") or [])
        if columns and (len(targets) != len(columns)
                        or not columns[0].startswith("modes/strength_")):
            # Without a known teacher, the final values stand in for the targets.
            targets = [float(metrics[c].dropna().iloc[-1]) for c in columns]
        rises = []
        for column, s in zip(columns, targets):
            data = metrics[["step", column]].dropna()
            steps, values = data["step"].to_numpy(float), data[column].to_numpy(float)
            rises.append(tuple(crossing(steps, values, f * s) for f in
                               (config.rise_low, config.learned_fraction, config.rise_high)))
        loss_col = _loss_column(metrics, config.loss_metric)
        staircase = (loss_steps(*(metrics[["step", loss_col]].dropna().to_numpy().T),
                               min_slope=config.min_slope, min_drop=config.min_drop,
                               min_gap=config.min_gap, min_share=config.min_share)
                     if loss_col else loss_steps([], []))
        theory, label = theory_for(experiment, targets) if columns else (None, "none")
        learned = [i for i, r in enumerate(rises) if r[1] is not None and r[2] is not None]
        order = sorted(learned, key=lambda i: rises[i][1])
        groups: list[list[int]] = []
        reach = -math.inf
        for i in order:
            start = rises[i][0] if rises[i][0] is not None else rises[i][1]
            if groups and start <= reach:
                groups[-1].append(i)
            else:
                groups.append([i])
            reach = max(reach, rises[i][2])
        spectral = len(groups) if columns else None
        separated = (len(groups) == len(learned)) if columns else None
        in_order = (all(targets[a] >= targets[b] for a, b in zip(order, order[1:]))
                    if columns else None)
        step_times = [r[1] for r in rises]
        ratio = ([t / p if t is not None and p else None for t, p in zip(step_times, theory)]
                 if theory else None)
        if columns:
            detected = len(learned) >= 2 and bool(separated)
        else:
            detected = staircase.staircase
        agree = (spectral == staircase.n_steps) if columns else None
        summary = _summary(detected, columns, learned, groups, step_times, theory,
                           in_order, staircase.n_steps, agree)
        return StepwiseVerdict(
            phenomenon="stepwise", detected=bool(detected), summary=summary,
            n_modes=len(columns), spectral_steps=spectral, loss_steps=staircase.n_steps,
            agree=agree, separated=separated, in_order=in_order,
            order=order if columns else None, step_times=step_times if columns else None,
            rise_starts=[r[0] for r in rises] if columns else None,
            rise_ends=[r[2] for r in rises] if columns else None,
            theory_times=theory, theory_ratio=ratio, theory=label,
            loss_step_times=staircase.times,
            plateaus=[list(p) for p in staircase.plateaus],
        )


def _summary(detected, columns, learned, groups, step_times, theory, in_order,
             n_loss, agree) -> str:
    loss = f"loss curve: {n_loss} drop{'s' * (n_loss != 1)}"
    if not columns:
        return (f"stepwise (loss only): {loss}" if detected
                else f"no staircase (loss only): {loss}")
    loss += " (agrees)" if agree else " (disagrees)"
    times = _fmt(step_times)
    predicted = f" (theory {_fmt(theory)})" if theory else ""
    order = "in order of decreasing s" if in_order else "out of order of s"
    if detected:
        missing = len(columns) - len(learned)
        unlearned = f" ({missing} of {len(columns)} modes not learned yet)" if missing else ""
        return f"{len(learned)} separate steps at {times}{predicted}{unlearned}, {order}; {loss}"
    if len(learned) < 2:
        return f"no steps: {len(learned)} of {len(columns)} modes learned; {loss}"
    return (f"no separate steps: {len(learned)} modes learned in {len(groups)} overlapping "
            f"rise{'s' * (len(groups) != 1)} at {times}{predicted}; {loss}")
