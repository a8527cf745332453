"""The large_step_sgd cases of the shared detector battery (phenomena/battery.py): SGD whose loss
is held up by a large step size until a decay, learning sparser features meanwhile (Andriushchenko
et al.), and the look-alikes (a small step size, held up but still dense, sparse from the
start)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dynamics_lab.phenomena import synthetic as syn
from dynamics_lab.phenomena.battery import DETECTED, NOT, UNDETERMINED, Case, drop, variants

DECAYED = {"optim": {"name": "sgd", "lr": 0.3, "decay_steps": [7000]}}


def table(kind: str = "sparsify", every: int = 50, steps: int = 10000, noise: float = 0.0,
          seed: int = 0) -> pd.DataFrame:
    """train/loss, val/loss and sparsity/{active,dead}_fraction every `every` steps around a
    step-size decay at 0.7 steps. `kind`: sparsify (the loss held at 1e-3 until the decay, then
    2e-4; the active fraction falling 0.5 -> 0.3), converged (a small step size: the loss on a
    slow power law, 1.3x lower over the decay; activity flat), dense (held up and released, but
    the activity stays), early (the activity falls in the first steps, the loss never held up)."""
    t = np.arange(0, steps + 1, every, dtype=float)
    decay = 0.7 * steps
    held = np.where(t < decay, 1e-3, 2e-4) * (1 + 0.3 * np.sin(t / (3 * every)))
    slow = 1e-3 * ((t + 1000) / (decay + 1000)) ** -0.8
    loss = {"sparsify": held, "converged": slow, "dense": held, "early": slow}[kind]
    fall = {"sparsify": np.clip(t / (0.4 * steps), 0, 1), "early": np.clip(t / (2 * every), 0, 1)
            }.get(kind, 0 * t)
    active = syn.noisy(0.5 - 0.2 * fall, noise / 5, seed + 1)
    return pd.DataFrame({"step": t.astype(int), "train/loss": syn.noisy(loss, noise, seed, True),
                         "val/loss": 5 * loss, "sparsity/active_fraction": active,
                         "sparsity/dead_fraction": 0.1 + 0.2 * fall})


def cases() -> list[Case]:
    """Every large_step_sgd case of the battery."""
    out = []
    for name, kw in variants([dict(every=50, noise=0.0), dict(every=25, noise=0.05),
                              dict(every=100, steps=20000, noise=0.1)]):
        experiment = {"optim": {**DECAYED["optim"],
                                "decay_steps": [int(0.7 * kw.get("steps", 10000))]}}
        for family, kind, expected in (("textbook", "sparsify", DETECTED),
                                       ("small step size", "converged", NOT),
                                       ("stabilized, still dense", "dense", NOT),
                                       ("sparse from the start", "early", NOT)):
            out.append(Case("large_step_sgd", family, name, expected,
                            lambda k=kind, kw=kw, e=experiment: (table(k, **kw), e)))
        out.append(Case("large_step_sgd", "no decay", name, UNDETERMINED,
                        lambda kw=kw: (table(**kw), {"optim": {"lr": 0.3}})))
        out.append(Case("large_step_sgd", "no activity column", name, UNDETERMINED, lambda kw=kw,
                        e=experiment: (drop(table(**kw), "sparsity/active_fraction"), e)))
    out.append(Case("large_step_sgd", "ends before the decay", "steps=6000", UNDETERMINED,
                    lambda: (table(steps=6000), DECAYED)))
    out.append(Case("large_step_sgd", "few evaluations", "every=1000", UNDETERMINED,
                    lambda: (table(every=1000), DECAYED)))
    return out
