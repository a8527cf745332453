"""A loss curve as a staircase: plateaus where the loss barely moves, separated by drops.

Works on any run's loss column. Time is taken logarithmically, so "barely moves" is scale-free:
on a grid of log(step + 1) the local slope -d log L / d log(step + 1) is computed from the running
minimum of the loss (so a transient bump is not read as a step), and a drop is a stretch where
that slope exceeds `min_slope` (the loss falls faster than 1/step^min_slope). Drops closer than
`min_gap` decades merge. A drop must shrink the loss by a factor `min_drop` and remove at least
`min_share` of the curve's whole decrease; the last rule keeps a slow clean-up far below the
loss's scale (e.g. a network shedding its initial weights off the target) from counting as a step.
The curve is cut where the loss reaches `floor_ratio` times its maximum, below which float noise
would read as drops. An exponential decay is one drop (no staircase): its slope grows with step
and never falls back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


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
               floor_ratio: float = 1e-6) -> LossSteps:
    """Drops and plateaus of one loss curve (see the module docstring for the definitions)."""
    steps, loss = np.asarray(steps, dtype=float), np.asarray(loss, dtype=float)
    keep = np.isfinite(steps) & np.isfinite(loss) & (loss > 0) & (steps >= 0)
    steps, loss = steps[keep], loss[keep]
    order = np.argsort(steps, kind="stable")
    steps, loss = steps[order], np.minimum.accumulate(loss[order])
    if len(steps) >= 2:
        above = loss >= floor_ratio * loss.max()
        last = len(above) if above.all() else int(np.argmin(above))
        steps, loss = steps[:max(last, 2)], loss[:max(last, 2)]
    t = np.log(steps + 1.0)
    if len(t) < 3 or t[-1] - t[0] <= 0:
        return LossSteps()
    n = max(int(math.ceil((t[-1] - t[0]) / math.log(10) * per_decade)), 2)
    grid = np.linspace(t[0], t[-1], n + 1)
    g = np.interp(grid, t, np.log(loss))
    slope = -np.diff(g) / np.diff(grid)
    regions = _merge(_runs(slope > min_slope), grid, min_gap * math.log(10))
    drops, total = [], loss[0] - loss[-1]
    for a, b in regions:
        factor = math.exp(g[a] - g[b + 1])
        if factor >= min_drop and math.exp(g[a]) - math.exp(g[b + 1]) >= min_share * total:
            # Half-way down in loss (not log-loss): the centre of a logistic drop.
            half = math.log(0.5 * (math.exp(g[a]) + math.exp(g[b + 1])))
            middle = float(np.interp(-half, -g[a:b + 2], grid[a:b + 2]))
            drops.append(Drop(start=_step(grid[a]), end=_step(grid[b + 1]), step=_step(middle),
                              factor=factor))
    return LossSteps(drops, _plateaus(drops, _step(t[0]), _step(t[-1]), min_gap))


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


def _merge(runs: list[tuple[int, int]], grid: np.ndarray, gap: float) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in runs:
        if merged and grid[a] - grid[merged[-1][1] + 1] < gap:
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
