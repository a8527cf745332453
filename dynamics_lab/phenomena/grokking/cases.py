"""The grokking cases of the shared detector battery (phenomena/battery.py): the textbook curve
(validation accuracy at chance long after the fit, then a sharp rise), the look-alikes a
first-crossing rule mistakes for it, look-alikes that probe Power et al.'s definition (a slow
rise after the fit, a fit lost and regained, a binary task), diverged runs and damaged tables."""

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
    last,
    variants,
)


def table(val: str = "grok", every: int = 20, steps: int = 4000, noise: float = 0.0,
          seed: int = 0, fit_at: float = 120, grok_at: float = 1500,
          chance: float = 0.01) -> pd.DataFrame:
    """train/acc and val/acc every `every` steps. `val` picks the validation curve:
    grok (at `chance` until a sharp rise at grok_at), spike (one evaluation at 0.97), creep
    (already ~0.8 at the fit, creeping over 0.95 late), lost (groks, then falls back to 0.3),
    together (rises with train in the first evaluations), never (stays at chance)."""
    t = np.arange(0, steps + 1, every, dtype=float)
    train = syn.sigmoid((t - fit_at) / (fit_at / 8))
    if val == "together":
        train = 1 - 0.99 * np.exp(-t / (every / 5))
    curves = {
        "grok": chance + (0.995 - chance) * syn.sigmoid((t - grok_at) / 60),
        "spike": np.where(np.abs(t - grok_at) < every / 2, 0.97, chance),
        "creep": 0.2 + 0.6 * syn.sigmoid((t - fit_at) / (fit_at / 8)) + 0.17 * t / steps,
        "lost": chance + (0.98 - chance) * syn.sigmoid((t - grok_at) / 60)
        * (1 - 0.7 * syn.sigmoid((t - grok_at - 1000) / 60)),
        "together": 0.98 * (1 - np.exp(-t / (0.8 * every))),
        "never": np.full(len(t), chance),
    }
    return pd.DataFrame({"step": t.astype(int),
                         "train/acc": syn.noisy(train, noise, seed, clip=(0, 1)),
                         "val/acc": syn.noisy(curves[val], noise, seed + 1, clip=(0, 1))})


def altered(kind: str, every: int = 20, steps: int = 4000, noise: float = 0.0) -> pd.DataFrame:
    """The textbook run, changed: slow (val acc climbs steadily from the fit, 0.01 at step 120,
    to 0.99 at 3/4 of the run), partial (the late rise stops at 0.6), dips (train acc falls to
    0.7 for five evaluations after the fit, then refits), lost (fit from step 200, the fit is
    lost from step 400 until just before the rise at 1 500), binary (chance 0.55: val acc 0.55
    at the fit)."""
    frame = table("grok", every=every, steps=steps, noise=noise)
    t = frame["step"].to_numpy(float)
    if kind == "slow":
        rise = np.clip((t - 120) / (0.75 * steps - 120), 0, 1)
        frame["val/acc"] = syn.noisy(0.01 + 0.98 * rise, noise, 1, clip=(0, 1))
    elif kind == "partial":
        frame["val/acc"] = syn.noisy(0.01 + 0.59 * syn.sigmoid((t - 1500) / 60), noise, 1,
                                     clip=(0, 1))
    elif kind == "dips":
        dip = (t >= 800) & (t < 800 + 5 * every)
        frame.loc[dip, "train/acc"] = 0.7
    elif kind == "lost":
        frame.loc[(t >= 400) & (t < 1440), "train/acc"] = 0.5
    elif kind == "binary":
        frame = table("grok", every=every, steps=steps, noise=noise, chance=0.55)
    return frame


def _textbook_and_look_alikes() -> list[Case]:
    out = []
    for name, kw in variants([dict(every=20, steps=4000, noise=0.0),
                              dict(every=10, steps=4000, noise=0.01),
                              dict(every=50, steps=10000, noise=0.02)]):
        for family, val, expected in (("textbook", "grok", DETECTED), ("spike", "spike", NOT),
                                      ("creep", "creep", NOT), ("lost", "lost", NOT),
                                      ("together", "together", NOT), ("never", "never", NOT)):
            out.append(Case("grokking", family, name, expected,
                            lambda val=val, kw=kw: (table(val, **kw), {})))
        out.append(Case("grokking", "no val/acc", name, UNDETERMINED,
                        lambda kw=kw: (drop(table("grok", **kw), "val/acc"), {})))
        out.append(Case("grokking", "crossing at the end", name, UNDETERMINED,
                        lambda kw=kw: (last(table("never", **kw), "val/acc", 0.97), {})))
    for name, kw in variants([dict(every=10, steps=200), dict(every=20, steps=260)]):
        out.append(Case("grokking", "ends after the fit", name, UNDETERMINED,
                        lambda kw=kw: (table("never", **kw), {})))
    out.append(Case("grokking", "few evaluations", "every=500, steps=3000", UNDETERMINED,
                    lambda: (table("grok", every=500, steps=3000), {})))
    return out


def _hostile() -> list[Case]:
    out = []
    cadences = {"every=20": dict(every=20), "every=50, steps=10000, noise=0.01":
                dict(every=50, steps=10000, noise=0.01)}
    for variant, kw in cadences.items():
        for family, kind, expected in (("slow steady rise after the fit", "slow", DETECTED),
                                       ("late rise to 60% only", "partial", NOT),
                                       ("train acc dips after the fit", "dips", DETECTED),
                                       ("fit lost until generalization", "lost", NOT),
                                       ("binary task, val acc 0.55 at the fit", "binary",
                                        DETECTED)):
            out.append(Case("grokking", family, variant, expected,
                            lambda k=kind, kw=kw: (altered(k, **kw), {})))
        for kind in ("inf", "nan"):
            name = f"{variant}, {kind} loss"
            out.append(Case("grokking", "diverged after grokking", name, DETECTED,
                            lambda k=kind, kw=kw: (diverged(table("grok", **kw), 3000, k), {})))
            out.append(Case("grokking", "diverged before generalizing", name, NOT,
                            lambda k=kind, kw=kw: (diverged(table("grok", **kw), 1000, k), {})))
    out.append(Case("grokking", "val acc logged only after the fit", "from step 1000",
                    UNDETERMINED, lambda: (table("grok").pipe(
                        lambda f: f.assign(**{"val/acc": f["val/acc"].where(f.step >= 1000)})),
                        {})))
    out.append(Case("grokking", "few evaluations", "3 evaluations", UNDETERMINED,
                    lambda: (table("grok", every=2000), {})))
    return out + damage_cases("grokking", lambda: table("grok"), {})


def cases() -> list[Case]:
    """Every grokking case of the battery."""
    return _textbook_and_look_alikes() + _hostile()
