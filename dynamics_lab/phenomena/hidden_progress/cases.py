"""The hidden_progress cases of the shared detector battery (phenomena/battery.py): a loss on a
plateau while the weight on the relevant features grows, then a sudden drop (Barak et al.), and
the look-alikes (a steady or exponential decline, a flat mass, quick learning, a drop that does
not last), too little data and damaged tables."""

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


def table(loss: str = "plateau", every: int = 100, steps: int = 4000, noise: float = 0.0,
          seed: int = 0, drop_at: float = 1500, mass_rise: float = 0.1,
          mass: bool = True) -> pd.DataFrame:
    """val/loss (syn.loss_shape kinds), val/acc and features/relevant_mass_top10, which grows by
    `mass_rise` (absolute, from 0.1) until the drop and jumps with it."""
    t = np.arange(0, steps + 1, every, dtype=float)
    values = syn.noisy(syn.loss_shape(loss, t, drop_at), noise, seed, relative=True)
    end = drop_at if loss in ("plateau", "transient") else t[-1]
    frame = pd.DataFrame({"step": t.astype(int), "val/loss": values,
                          "val/acc": np.where(values < 0.3, 1.0, 0.5)})
    if mass:
        frame["features/relevant_mass_top10"] = (
            0.1 + mass_rise * np.clip(t / end, 0, 1) + 0.4 * (values < 0.3))
    return frame


def relapse(frame: pd.DataFrame) -> pd.DataFrame:
    """The loss back on its plateau (and the accuracy at chance) from step 1 800 to 3 000."""
    back = (frame.step >= 1800) & (frame.step <= 3000)
    return frame.assign(**{"val/loss": frame["val/loss"].mask(back, 1.0),
                           "val/acc": frame["val/acc"].mask(back, 0.5)})


def _textbook_and_look_alikes() -> list[Case]:
    out = []
    for name, kw in variants([dict(every=100, steps=4000, noise=0.0),
                              dict(every=50, steps=4000, noise=0.02),
                              dict(every=100, steps=8000, noise=0.03)]):
        for family, extra, expected in (
                ("textbook", dict(loss="plateau"), DETECTED),
                ("after a transient", dict(loss="transient"), DETECTED),
                ("linear decline", dict(loss="linear"), NOT),
                ("slow exponential", dict(loss="exponential"), NOT),
                ("flat mass", dict(loss="plateau", mass_rise=0.0), NOT),
                ("quick learning", dict(loss="plateau", drop_at=150), NOT),
                ("still on the plateau", dict(loss="plateau", drop_at=10 * kw["steps"]),
                 UNDETERMINED),
                ("no mass column", dict(loss="plateau", mass=False), UNDETERMINED)):
            out.append(Case("hidden_progress", family, name, expected,
                            lambda e=extra, kw=kw: (table(**e, **kw), {})))
    out.append(Case("hidden_progress", "few evaluations", "every=500, steps=4000", UNDETERMINED,
                    lambda: (table(every=500), {})))
    return out


def _hostile() -> list[Case]:
    out = []
    for variant, kw in {"every=100": dict(every=100), "every=50, noise=0.02":
                        dict(every=50, noise=0.02)}.items():
        out.append(Case("hidden_progress", "drop, then back on the plateau", variant, NOT,
                        lambda kw=kw: (relapse(table(**kw)), {})))
    out += [Case("hidden_progress", "drop at the last evaluations", "every=100", UNDETERMINED,
                 lambda: (table(drop_at=3850), {})),
            Case("hidden_progress", "mass logged only after the drop", "from step 2000",
                 UNDETERMINED, lambda: (table().pipe(lambda f: f.assign(**{
                     "features/relevant_mass_top10":
                     f["features/relevant_mass_top10"].where(f.step >= 2000)})), {}))]
    return out + damage_cases("hidden_progress", table, {})


def cases() -> list[Case]:
    """Every hidden_progress case of the battery."""
    return _textbook_and_look_alikes() + _hostile()
