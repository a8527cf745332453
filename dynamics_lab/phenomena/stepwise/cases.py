"""The stepwise cases of the shared detector battery (phenomena/battery.py): modes learned one at
a time from small initialisation (Saxe et al.), as mode strengths and as the loss alone, and the
look-alikes (modes saturating together, separate exponential saturations, a smooth loss, a mode
learned and lost), too little data and damaged tables."""

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
    variants,
)

STEPWISE = {"task": {"name": "low_rank_regression", "singular_values": [3.0, 1.0, 0.3]}}


def mode_curves(kind: str, t: np.ndarray, s=(3.0, 1.0, 0.3), lr: float = 0.1,
                m0: float = 5e-5) -> list[np.ndarray]:
    """Mode strengths over steps: logistic (two-layer net from small init, Saxe et al.),
    together (depth-1 regression: every mode saturates at the same rate), anisotropic (linear
    regression on inputs of very different scales: separate but exponential saturations)."""
    if kind == "logistic":
        return [si * syn.sigmoid(2 * lr * si * t - np.log(si / m0 - 1)) for si in s]
    rates = {"together": [lr] * len(s), "anisotropic": [lr, lr / 30, lr / 900]}[kind]
    return [si * (1 - np.exp(-r * t)) for si, r in zip(s, rates)]


def table(kind: str = "logistic", steps: int = 2000, log_spaced: bool = False,
          noise: float = 0.0, seed: int = 0, s=(3.0, 1.0, 0.3),
          loss_only: bool = False) -> pd.DataFrame:
    """modes/strength_i and train/batch_loss (0.5 sum (s_i - m_i)^2, every step). Modes are
    logged every step or at ~100 log-spaced steps per decade; `noise` is relative to s_i.
    `kind` as in mode_curves; with loss_only the mode columns are dropped."""
    t = np.arange(steps + 1, dtype=float)
    modes = mode_curves(kind, t, s)
    loss = 0.5 * sum((si - m) ** 2 for si, m in zip(s, modes)) + 1e-4
    frame = pd.DataFrame({"step": t.astype(int),
                          "train/batch_loss": syn.noisy(loss, noise, seed, relative=True)})
    if loss_only:
        return frame
    logged = t if not log_spaced else np.unique(np.round(np.logspace(0, np.log10(steps), 300)))
    keep = np.isin(t, logged) | (t == 0)
    for i, (si, m) in enumerate(zip(s, modes)):
        frame[f"modes/strength_{i}"] = np.where(keep, syn.noisy(m, noise * si, seed + 1 + i),
                                                np.nan)
    return frame


def loss_curve(kind: str, steps: int = 5000, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """A train/batch_loss alone: exponential (one smooth decay), power (~ step^-1, the slope
    wandering around the loss detector's threshold)."""
    t = np.arange(steps + 1, dtype=float)
    loss = {"exponential": np.exp(-t / 300.0) + 1e-4, "power": (t + 10.0) ** -1.0}[kind]
    return pd.DataFrame({"step": t.astype(int),
                         "train/batch_loss": syn.noisy(loss, noise, seed, relative=True)})


def fallen(frame: pd.DataFrame) -> pd.DataFrame:
    """Mode 1 learned, then unlearned: it falls back to zero from step 1 400."""
    t = frame["step"].to_numpy(float)
    return frame.assign(**{"modes/strength_1": frame["modes/strength_1"]
                           * (1 - syn.sigmoid((t - 1400) / 40))})


def _textbook_and_look_alikes() -> list[Case]:
    out = []
    for name, kw in variants([dict(steps=2000, log_spaced=False, noise=0.0),
                              dict(steps=2000, log_spaced=True, noise=0.01),
                              dict(steps=4000, log_spaced=True, noise=0.03)]):
        for family, kind, expected in (("textbook", "logistic", DETECTED),
                                       ("saturate together", "together", NOT),
                                       ("anisotropic regression", "anisotropic", NOT)):
            out.append(Case("stepwise", family, name, expected,
                            lambda k=kind, kw=kw: (table(k, **kw), STEPWISE)))
        out.append(Case("stepwise", "textbook, loss only", name, DETECTED, lambda kw=kw: (
            table("logistic", loss_only=True, **kw), {})))
        out.append(Case("stepwise", "too short", name, UNDETERMINED, lambda kw=kw: (
            table("logistic", **{**kw, "steps": 30}), STEPWISE)))
    for name, kw in variants([dict(steps=5000, noise=0.0), dict(steps=5000, noise=0.05),
                              dict(steps=20000, noise=0.1)]):
        for family, kind in (("noisy exponential", "exponential"), ("noisy power law", "power")):
            out.append(Case("stepwise", family, name, NOT,
                            lambda k=kind, kw=kw: (loss_curve(k, **kw), {})))
    out.append(Case("stepwise", "no modes, no loss", "steps=2000", UNDETERMINED, lambda: (
        table("logistic")[["step"]].assign(other=1.0), STEPWISE)))
    out.append(Case("stepwise", "few samples", "8 rows", UNDETERMINED, lambda: (
        table("logistic").iloc[::250], STEPWISE)))
    return out


def _hostile() -> list[Case]:
    out = []
    equal = {"task": {"name": "low_rank_regression", "singular_values": [1.0, 1.0, 0.3]}}
    for variant, kw in {"every step": dict(), "log-spaced, noise=0.01":
                        dict(log_spaced=True, noise=0.01)}.items():
        out += [Case("stepwise", "two modes of equal strength", variant, DETECTED,
                     lambda kw=kw: (table(s=(1.0, 1.0, 0.3), **kw), equal)),
                Case("stepwise", "a mode learned, then lost", variant, NOT,
                     lambda kw=kw: (fallen(table(**kw)), STEPWISE)),
                Case("stepwise", "a mode learned, then lost", f"{variant}, no teacher", NOT,
                     lambda kw=kw: (fallen(table(**kw)), {}))]
    out.append(Case("stepwise", "a mode never logged", "strength_2 all NaN", UNDETERMINED,
                    lambda: (table().assign(**{"modes/strength_2": np.nan}), STEPWISE)))
    return out + damage_cases("stepwise", table, STEPWISE)


def cases() -> list[Case]:
    """Every stepwise case of the battery."""
    return _textbook_and_look_alikes() + _hostile()
