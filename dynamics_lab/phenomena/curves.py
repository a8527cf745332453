"""Curve shapes the detectors share: a column as arrays, sustained crossings, flat stretches."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dynamics_lab.phenomena.base import STEP


def series(metrics: pd.DataFrame, column: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the rows where `column` holds a finite value, in step order (an
    infinite loss, accuracy or sharpness is no value of the curve: `diverged_at` reads it)."""
    if column is None or column not in metrics:
        return np.zeros(0), np.zeros(0)
    steps, values = metrics[STEP].to_numpy(float), metrics[column].to_numpy(float)
    keep = np.isfinite(values)
    return steps[keep], values[keep]


# The training loss and accuracy of one evaluation are logged together; a run's metrics file
# stores a NaN as an empty cell, so a row with the accuracy but no loss is a NaN loss.
TRAIN_LOSSES = ("train/batch_loss", "train/loss")
PAIRED = {"train/loss": "train/acc"}


def diverged_at(metrics: pd.DataFrame, losses=TRAIN_LOSSES) -> float | None:
    """First step at which a training loss was non-finite (the run diverged), else None."""
    bad = np.zeros(len(metrics), bool)
    for loss in losses:
        if loss not in metrics:
            continue
        values = metrics[loss].to_numpy(float)
        bad |= np.isinf(values)
        partner = PAIRED.get(loss)
        if partner in metrics:
            bad |= np.isnan(values) & np.isfinite(metrics[partner].to_numpy(float))
    hit = np.flatnonzero(bad)
    return float(metrics[STEP].iloc[hit[0]]) if len(hit) else None


def first_column(metrics: pd.DataFrame, names) -> str | None:
    """The first of `names` with a logged value."""
    return next((c for c in names if c in metrics and metrics[c].notna().any()), None)


def sustained(meets: np.ndarray, sustain: int, start: int = 0) -> int | None:
    """First index >= start from which `meets` holds `sustain` times in a row (None if never).

    A run of fewer than `sustain` at the very end does not count: it is not confirmed yet.
    """
    meets = np.asarray(meets, bool)
    run = 0
    for i in range(start, len(meets)):
        run = run + 1 if meets[i] else 0
        if run >= sustain:
            return i - sustain + 1
    return None


def held(meets: np.ndarray, sustain: int, hold: float, start: int = 0) -> tuple[int | None,
                                                                             float | None]:
    """First index from which `meets` holds `sustain` times in a row AND in at least `hold` of
    all later values (reached for good, not a transient), and that share; (None, None)."""
    meets = np.asarray(meets, bool)
    while (i := sustained(meets, sustain, start)) is not None:
        share = float(meets[i:].mean())
        if share >= hold:
            return i, share
        start = i + 1
    return None, None


def first(meets: np.ndarray, start: int = 0) -> int | None:
    hit = np.flatnonzero(np.asarray(meets, bool)[start:])
    return int(hit[0]) + start if len(hit) else None


def value_at(steps: np.ndarray, values: np.ndarray, step: float) -> float | None:
    """The last value logged at or before `step` (None before the first)."""
    k = int(np.searchsorted(steps, step, side="right")) - 1
    return float(values[k]) if k >= 0 else None


def rolling_median(values: np.ndarray, width: int = 3) -> np.ndarray:
    """Centred running median: one stray evaluation does not break a plateau or fake a drop."""
    if len(values) < width:
        return np.asarray(values, float)
    return pd.Series(values).rolling(width, center=True, min_periods=1).median().to_numpy()


def flat_stretches(values: np.ndarray, band: float, min_len: int) -> list[tuple[int, int]]:
    """Maximal runs [a, b] (inclusive, >= min_len values) whose values all lie within +-band
    (relative) of the run's median, found left to right without overlap."""
    values = np.asarray(values, float)
    out, a, n = [], 0, len(values)
    while a < n:
        b = a
        while b + 1 < n:
            part = values[a:b + 2]
            centre = float(np.median(part))
            if not np.all(np.abs(part - centre) <= band * abs(centre)):
                break
            b += 1
        if b - a + 1 >= min_len:
            out.append((a, b))
            a = b + 1
        else:
            a += 1
    return out

