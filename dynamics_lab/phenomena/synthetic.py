"""Building blocks of synthetic metric tables, shared by the phenomena's battery cases
(phenomena/<name>/cases.py): a sigmoid, seeded noise, an outer join on step, and the loss shapes
(a plateau with a sudden drop and its look-alikes) that more than one phenomenon reads. Pure
numpy/pandas.

Every table built from them is one run's metrics table (a `step` column plus metric columns, NaN
where a metric was not logged at that step), as a run directory's metrics.csv reads.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def sigmoid(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-np.asarray(x, float)))


def noisy(values, sigma: float, seed: int, relative: bool = False, clip=None) -> np.ndarray:
    """values plus Gaussian noise (times the values when relative), optionally clipped."""
    values = np.asarray(values, float)
    if sigma:
        eps = np.random.default_rng(seed).normal(0.0, sigma, values.shape)
        values = values * np.exp(eps) if relative else values + eps
    return np.clip(values, *clip) if clip else values


def merge(*frames: pd.DataFrame) -> pd.DataFrame:
    """Outer-join tables on step (metrics logged at different cadences)."""
    out = frames[0]
    for frame in frames[1:]:
        out = out.merge(frame, on="step", how="outer")
    return out.sort_values("step", kind="stable").reset_index(drop=True)


def loss_shape(kind: str, t: np.ndarray, drop_at: float, level: float = 1.0) -> np.ndarray:
    """plateau (flat at `level`, sudden drop at drop_at), transient (starts at 2x level and
    falls to it within two evaluations, then as plateau), linear (declines steadily to zero over
    the run), exponential (slow decay, time constant a third of the run), settle (the transient
    alone: down to the level, then flat for good)."""
    span = t[-1] - t[0]
    plateau = level * (1 - sigmoid((t - drop_at) / (0.04 * drop_at)))
    first = t[1] - t[0]
    bump = level * np.exp(-(t - t[0]) / (0.7 * first))
    return {"plateau": plateau, "transient": plateau + bump,
            "linear": level * (1 - (t - t[0]) / span * 0.98),
            "exponential": level * np.exp(-(t - t[0]) / (span / 3)),
            "settle": level + 5 * bump}[kind]
