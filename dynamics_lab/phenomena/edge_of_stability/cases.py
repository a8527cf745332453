"""The edge-of-stability cases of the shared detector battery (phenomena/battery.py): sharpness
that rises to 2/eta and hovers there while the loss falls non-monotonically (Cohen et al.), its
look-alikes (a catapult, an overshoot, levelling off below, a growing loss, a swing around the
threshold), a learning-rate decay, a momentum threshold read from the config, diverged runs and
damaged tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dynamics_lab.phenomena import synthetic as syn
from dynamics_lab.phenomena.battery import (
    DETECTED,
    NOT,
    UNDETERMINED,
    Case,
    damage_cases,
    diverged,
    drop,
    variants,
)

GD = {"optim": {"name": "gd", "lr": 0.1}}


def table(sharpness: str = "edge", loss: str = "falls", every: int = 25, steps: int = 3000,
          noise: float = 0.0, seed: int = 0, threshold: float = 20.0,
          reach_at: float = 700) -> pd.DataFrame:
    """hessian/lambda_max every `every` steps (with hessian/threshold) and train/batch_loss every
    step. `sharpness`: edge (sharpens from 0.15x to the threshold, hovers at 1.02x), entropy (the
    same, then declines to 0.3x from 40% of the way after the crossing, as under cross-entropy),
    catapult (starts at 3x and relaxes onto the threshold), over (settles at 1.5x), low (levels
    off at 0.6x), rising (still sharpening at the end, 0.8x). `loss`: falls (non-monotone,
    falling over the long run), grows (non-monotone, growing without bound)."""
    t = np.arange(0, steps + 1, every, dtype=float)
    ramp = np.clip(t / reach_at, 0, 1)
    hover = 1.02 + 0.03 * np.sin(t / every)
    late = syn.sigmoid((t - (reach_at + 0.4 * (steps - reach_at))) / (0.03 * steps))
    ratio = {
        "edge": np.where(t < reach_at, 0.15 + 0.85 * ramp, hover),
        "entropy": np.where(t < reach_at, 0.15 + 0.85 * ramp, hover * (1 - 0.7 * late)),
        "catapult": 1.0 + 2.0 * np.exp(-t / (3 * every)) + 0.02 * np.sin(t / every),
        "over": np.where(t < reach_at, 0.15 + 1.35 * ramp, 1.5 + 0.03 * np.sin(t / every)),
        "low": 0.6 - 0.45 * np.exp(-t / reach_at),
        "rising": 0.15 + 0.65 * t / steps,
    }[sharpness]
    sharp = pd.DataFrame({"step": t.astype(int),
                          "hessian/lambda_max": threshold * syn.noisy(ratio, noise, seed),
                          "hessian/threshold": threshold})
    s = np.arange(steps + 1, dtype=float)
    trend = np.exp(-s / (steps / 6)) if loss == "falls" else np.exp(s / (steps / 4))
    wiggle = np.where(s % 4 == 0, 1.5, 1.0)  # rises every 4th step: non-monotone at the edge
    batch = pd.DataFrame({"step": s.astype(int),
                          "train/batch_loss": syn.noisy(trend * wiggle, noise, seed + 1, True)})
    return syn.merge(batch, sharp)


def altered(kind: str, every: int = 25, steps: int = 3000, noise: float = 0.0) -> pd.DataFrame:
    """The textbook run, changed: swings (after reaching the threshold the sharpness swings +-40%
    around it), decay (the learning rate halves at 2/3 of the run: the logged threshold doubles,
    the sharpness stays where it was)."""
    frame = table(every=every, steps=steps, noise=noise)
    t = frame["step"].to_numpy(float)
    sampled = frame["hessian/lambda_max"].notna().to_numpy() & (t >= 700)
    if kind == "swings":
        frame.loc[sampled, "hessian/lambda_max"] = 20 * (1 + 0.4 * np.sin(1.3 * t[sampled] / every))
    elif kind == "decay":
        frame.loc[t >= 2 * steps / 3, "hessian/threshold"] *= 2
    return frame


def _textbook_and_look_alikes() -> list[Case]:
    out = []
    for name, kw in variants([dict(every=25, steps=3000, noise=0.0),
                              dict(every=10, steps=3000, noise=0.02),
                              dict(every=50, steps=6000, noise=0.03)]):
        for family, sharp, loss, expected in (
                ("textbook", "edge", "falls", DETECTED),
                ("cross-entropy decline", "entropy", "falls", DETECTED),
                ("catapult", "catapult", "falls", NOT), ("loss grows", "edge", "grows", NOT),
                ("overshoot", "over", "falls", NOT), ("levels off below", "low", "falls", NOT),
                ("still sharpening", "rising", "falls", UNDETERMINED)):
            out.append(Case("edge_of_stability", family, name, expected,
                            lambda s=sharp, lo=loss, kw=kw: (table(s, lo, **kw), GD)))
        out.append(Case("edge_of_stability", "no sharpness", name, UNDETERMINED, lambda kw=kw: (
            drop(table(**kw), "hessian/lambda_max"), GD)))
        out.append(Case("edge_of_stability", "no loss", name, UNDETERMINED, lambda kw=kw: (
            drop(table(**kw), "train/batch_loss"), GD)))
        out.append(Case("edge_of_stability", "no threshold", name, UNDETERMINED, lambda kw=kw: (
            drop(table(**kw), "hessian/threshold"), {})))
        out.append(Case("edge_of_stability", "reached at the end", name, UNDETERMINED,
                        lambda kw=kw: (table(reach_at=(kw["steps"] - 2 * kw["every"]) / 0.94,
                                             **kw), GD)))
    return out


def _hostile() -> list[Case]:
    out = []
    momentum = {"optim": {"name": "sgd", "lr": 0.1, "momentum": 0.5}}  # (2 + 2 beta) / eta = 30
    for variant, kw in {"every=25": dict(every=25), "every=50, steps=6000, noise=0.02":
                        dict(every=50, steps=6000, noise=0.02)}.items():
        out += [Case("edge_of_stability", "swings +-40% around 2/eta", variant, NOT,
                     lambda kw=kw: (altered("swings", **kw), GD)),
                Case("edge_of_stability", "learning rate halved at 2/3", variant, DETECTED,
                     lambda kw=kw: (altered("decay", **kw), GD)),
                Case("edge_of_stability", "threshold from momentum in the config", variant,
                     DETECTED, lambda kw=kw: (table(threshold=30.0, **kw).drop(
                         columns=["hessian/threshold"]), momentum))]
        for kind in ("inf", "nan"):
            out.append(Case("edge_of_stability", "diverged at the threshold",
                            f"{variant}, {kind}", NOT,
                            lambda k=kind, kw=kw: (diverged(table(**kw),
                                                            0.9 * kw.get("steps", 3000), k), GD)))
    out.append(Case("edge_of_stability", "few samples", "2 samples", UNDETERMINED,
                    lambda: (table(every=2000), GD)))
    return out + damage_cases("edge_of_stability", table, GD)


def cases() -> list[Case]:
    """Every edge-of-stability case of the battery."""
    return _textbook_and_look_alikes() + _hostile()
