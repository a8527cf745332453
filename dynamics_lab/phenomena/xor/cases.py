"""The xor cases of the shared detector battery (phenomena/battery.py): SGD on XOR that first
searches (the loss at log 2 while the alignment with the signal rises) and then tunes (the loss
falls), and the look-alikes (features only after the drop, no search phase, a large initial
output), runs that stop searching or tuning too early, and too little data."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dynamics_lab.phenomena import synthetic as syn
from dynamics_lab.phenomena.battery import DETECTED, NOT, UNDETERMINED, Case, variants


def table(kind: str = "find_tune", every: int = 20, steps: int = 4000, noise: float = 0.0,
          seed: int = 0, search_end: float = 1000, alignment: bool = True) -> pd.DataFrame:
    """val/loss and val/acc every `every` steps, signal/alignment (and signal/random_level) at
    ~20 log-spaced steps per decade. `kind`: find_tune (loss at log 2 until search_end, then
    down to 0.01 log 2; the alignment rises 0.1 -> 0.95 during the search), late_features (the
    same loss, the alignment rising only after the drop), at_once (the loss falls from step 0),
    large_init (starts at 2x log 2 and falls), stalls (leaves log 2, then stays at 0.6 log 2)."""
    chance = float(np.log(2))
    t = np.arange(0, steps + 1, every, dtype=float)
    width = 0.05 * search_end
    drop = syn.sigmoid((t - search_end) / width)
    loss = {"find_tune": chance * (1 - 0.99 * drop), "late_features": chance * (1 - 0.99 * drop),
            "at_once": chance * (0.01 + 0.99 * np.exp(-t / (5 * every))),
            "large_init": chance * (0.01 + 1.99 * np.exp(-t / search_end)),
            "stalls": chance * (1 - 0.4 * drop)}[kind]
    loss = syn.noisy(loss, noise, seed, relative=True)
    frame = pd.DataFrame({"step": t.astype(int), "val/loss": loss,
                          "val/acc": np.where(loss < 0.5 * chance, 1.0, 0.5)})
    if not alignment:
        return frame
    a = np.unique(np.round(np.logspace(0, np.log10(steps), 20 * int(np.log10(steps)) + 1)))
    a = np.concatenate([[0.0], a])
    centre = {"late_features": search_end + 20 * width, "at_once": 5 * every,
              "large_init": search_end}.get(kind, 0.7 * search_end)
    rise = 0.1 + 0.85 * syn.sigmoid((a - centre) / width)
    signal = pd.DataFrame({"step": a.astype(int), "signal/random_level": 0.1,
                           "signal/alignment": syn.noisy(rise, noise, seed + 1, clip=(0, 1))})
    return syn.merge(frame, signal)


def cases() -> list[Case]:
    """Every xor case of the battery."""
    out = []
    for name, kw in variants([dict(every=20, steps=4000, noise=0.0),
                              dict(every=10, steps=4000, noise=0.01),
                              dict(every=50, steps=10000, noise=0.02, search_end=3000)]):
        for family, extra, expected in (
                ("textbook", dict(kind="find_tune"), DETECTED),
                ("features after the drop", dict(kind="late_features"), NOT),
                ("no search phase", dict(kind="at_once"), NOT),
                ("large initial output", dict(kind="large_init"), NOT),
                ("still searching", dict(kind="find_tune", search_end=20 * kw["steps"]),
                 UNDETERMINED),
                ("still tuning", dict(kind="stalls"), UNDETERMINED),
                ("no alignment column", dict(kind="find_tune", alignment=False), UNDETERMINED)):
            out.append(Case("xor", family, name, expected,
                            lambda e=extra, kw=kw: (table(**{**kw, **e}), {})))
    out.append(Case("xor", "few evaluations", "every=500, steps=4000", UNDETERMINED,
                    lambda: (table(every=500), {})))
    return out
