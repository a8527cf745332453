"""A loss curve as a staircase: plateaus where the loss barely moves, separated by drops.

Works on any run's loss column. Time is taken logarithmically, so "barely moves" is scale-free.
Log-loss is smoothed by a running median of five values, then by its median on a grid of
`per_decade` points per decade of log(step + 1), wider where fewer than `min_points` values fall
between two points (both leave a monotone curve as it is), then turned into its running minimum
(so a transient bump is not read as a step); the local slope -d log L / d log(step + 1) is taken
on that grid. A drop is a stretch where the slope exceeds `min_slope` (the loss falls faster than
1/step^min_slope). Two drops stay apart only when a plateau lies between them: at least `min_gap`
decades where the smoothed curve's own slope is below `plateau_fraction` x min_slope; otherwise
they merge (a noisy power law whose slope wanders around min_slope is one long descent, not a
staircase). A drop must shrink the loss by a factor `min_drop` and by exp(noise_drops x the noise
of one logged value), so that noise caught by the running minimum is not a step; and it must
remove at least `min_share` of the curve's whole decrease, which keeps a slow clean-up far below
the loss's scale from counting as a step. The curve is cut where the loss reaches `floor_ratio`
times its maximum, below which float noise would read as drops. An exponential decay is one drop
(no staircase): its slope grows with step and never falls back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class Drop:
    start: float  # step where the drop begins
    end: float  # step where it ends
    step: float  # step where the loss is half-way (linearly) from its start to its end value
    factor: float  # loss at start / loss at end


@dataclass
class LossSteps:
    drops: list[Drop] = field(default_factory=list)
    plateaus: list[tuple[float, float]] = field(default_factory=list)

    @property
    def n_steps(self) -> int:
        return len(self.drops)

    @property
    def staircase(self) -> bool:
        """Two or more drops with a plateau between them."""
        return len(self.drops) >= 2

    @property
    def times(self) -> list[float]:
        return [d.step for d in self.drops]


def loss_steps(steps, loss, min_slope: float = 1.0, min_drop: float = 1.25,
               min_gap: float = 0.05, min_share: float = 1e-3, per_decade: int = 40,
               floor_ratio: float = 1e-6, plateau_fraction: float = 0.7,
               noise_drops: float = 6.0, min_points: int = 5) -> LossSteps:
    """Drops and plateaus of one loss curve (see the module docstring for the definitions)."""
    steps, loss = np.asarray(steps, dtype=float), np.asarray(loss, dtype=float)
    keep = np.isfinite(steps) & np.isfinite(loss) & (loss > 0) & (steps >= 0)
    steps, loss = steps[keep], loss[keep]
    order = np.argsort(steps, kind="stable")
    steps, loss = steps[order], loss[order]
    if len(steps) >= 2:
        above = loss >= floor_ratio * loss.max()
        last = len(above) if above.all() else int(np.argmin(above))
        steps, loss = steps[:max(last, 2)], loss[:max(last, 2)]
    t = np.log(steps + 1.0)
    if len(t) < 3 or t[-1] - t[0] <= 0:
        return LossSteps()
    grid = _grid(t, math.log(10) / per_decade, min_points)
    log_loss = np.log(loss)
    smooth = pd.Series(log_loss).rolling(5, center=True, min_periods=1).median().to_numpy()
    # Noise of one logged value (robust sd from consecutive differences): a drop must stand
    # well above it.
    noise = 1.4826 * float(np.median(np.abs(np.diff(log_loss)))) / math.sqrt(2)
    min_drop = max(min_drop, math.exp(noise_drops * noise))
    raw = _binned_median(t, smooth, grid)
    g = np.minimum.accumulate(raw)
    slope = -np.diff(g) / np.diff(grid)
    # Plateaus are read off the curve itself: its running minimum stays flat after any dip.
    flat = _runs(-np.diff(raw) / np.diff(grid) < plateau_fraction * min_slope)
    gap = min_gap * math.log(10)
    regions = _split(_runs(slope > min_slope), [(a, b) for a, b in flat
                                                if grid[b + 1] - grid[a] >= gap])
    drops, total = [], math.exp(g[0]) - math.exp(g[-1])
    for a, b in regions:
        factor = math.exp(g[a] - g[b + 1])
        if factor >= min_drop and math.exp(g[a]) - math.exp(g[b + 1]) >= min_share * total:
            # Half-way down in loss (not log-loss): the centre of a logistic drop.
            half = math.log(0.5 * (math.exp(g[a]) + math.exp(g[b + 1])))
            middle = float(np.interp(-half, -g[a:b + 2], grid[a:b + 2]))
            drops.append(Drop(start=_step(grid[a]), end=_step(grid[b + 1]), step=_step(middle),
                              factor=factor))
    return LossSteps(drops, _plateaus(drops, _step(t[0]), _step(t[-1]), min_gap))


def _grid(t: np.ndarray, width: float, min_points: int) -> np.ndarray:
    """Points from t[0] to t[-1], `width` apart in log-time, or further where fewer than
    `min_points` values would fall between two (early steps are sparse in log-time, and a slope
    over one or two noisy values is noise)."""
    points, k = [t[0]], 0
    while True:
        k = min(k + min_points, len(t) - 1)
        nxt = max(points[-1] + width, t[k])
        if nxt >= t[-1] - width / 2:
            break
        points.append(nxt)
        k = int(np.searchsorted(t, nxt, side="right")) - 1
    points.append(t[-1])
    return np.asarray(points) if len(points) > 2 else np.linspace(t[0], t[-1], 3)


def _binned_median(t: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """y at the grid points: the median of the samples nearest each point, linearly
    interpolated where no sample is nearest."""
    edges = (grid[1:] + grid[:-1]) / 2
    bins = np.searchsorted(edges, t)
    values = np.full(len(grid), np.nan)
    for k in np.unique(bins):
        values[k] = np.median(y[bins == k])
    known = np.isfinite(values)
    return np.interp(grid, grid[known], values[known])


def _step(log_t: float) -> float:
    return float(math.exp(log_t) - 1.0)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive index ranges of consecutive True values."""
    runs, start = [], None
    for i, on in enumerate(mask):
        if on and start is None:
            start = i
        elif not on and start is not None:
            runs.append((start, i - 1))
            start = None
    if start is not None:
        runs.append((start, len(mask) - 1))
    return runs


def _split(runs: list[tuple[int, int]], plateaus: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge consecutive steep runs unless a plateau lies entirely between them."""
    merged: list[tuple[int, int]] = []
    for a, b in runs:
        if merged and not any(merged[-1][1] < p <= q < a for p, q in plateaus):
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def _plateaus(drops: list[Drop], first: float, last: float,
              min_gap: float) -> list[tuple[float, float]]:
    """The stretches before, between and after the drops that last at least min_gap decades."""
    bounds = [first] + [x for d in drops for x in (d.start, d.end)] + [last]
    out = []
    for lo, hi in zip(bounds[::2], bounds[1::2]):
        if math.log10(hi + 1) - math.log10(lo + 1) >= min_gap:
            out.append((lo, hi))
    return out
