"""Verdicts across seeds: one row per grid point of a sweep, with "k/n seeds" detected and a 95%
confidence interval on the phenomenon's key numbers (the delay ratio, the step times, the
fraction within the band...), computed from the run table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from dynamics_lab.phenomena.base import Outcome
from dynamics_lab.phenomena.columns import verdict_key
from dynamics_lab.tracking.rundir import FINISHED

CONFIDENCE = 0.95
_FINISHED = [s.value for s in FINISHED]
UNBOUNDED = (-math.inf, math.inf)  # the support of a field with no declared range


def interval(values, confidence: float = CONFIDENCE,
             support: tuple[float, float] = UNBOUNDED) -> tuple[float, float, float]:
    """Mean and Student-t interval of the finite values (NaN bounds with fewer than two), cut to
    `support`, the values the quantity can take: three fractions 0.9, 0.95, 1 give [0.83, 1],
    not [0.83, 1.07]."""
    x = np.asarray([float(v) for v in values if _finite(v)], float)
    if not len(x):
        return float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    if len(x) < 2:
        return mean, float("nan"), float("nan")
    from scipy import stats  # on first use: `dynlab dashboard` and notebooks need none of it

    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    low, high = support
    return mean, min(max(mean - half, low), high), max(min(mean + half, high), low)


def _finite(value) -> bool:
    try:
        return value is not None and bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        return False


def _columns(values: pd.Series, field: str) -> dict[str, pd.Series]:
    """A field as scalar columns: a list-valued field (step times per mode) becomes one per item."""
    lists = [v for v in values if isinstance(v, (list, tuple))]
    if not lists:
        return {field: values}
    width = max(len(v) for v in lists)
    return {f"{field}[{i}]": values.map(lambda v, i=i: v[i] if isinstance(v, (list, tuple))
                                        and i < len(v) else None) for i in range(width)}


def seed_cells(table: pd.DataFrame, axes: list[str], fields: tuple[str, ...],
               ranges: dict[str, tuple[float, float]] | None = None) -> pd.DataFrame:
    """Per grid point (the swept keys, seeds pooled): runs, finished runs, outcome counts,
    `seeds` as "k/n detected", and <field>_mean / _ci_low / _ci_high of each key verdict field
    (`verdict/<field>` in the run table) over the seeds, each interval cut to the field's range
    (`Detector.field_ranges`) where it has one."""
    ranges = ranges or {}
    keys = [a for a in axes if a in table and a != "seed"]
    groups = table.groupby(keys, dropna=False, sort=True) if keys else [((), table)]
    rows = []
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        done = part[part["status"].isin(_FINISHED)] if "status" in part else part
        column = verdict_key("outcome")
        outcome = done[column] if column in done else pd.Series(dtype=object)
        k = int((outcome == Outcome.DETECTED.value).sum())
        row = dict(zip(keys, key))
        row.update(runs=len(part), finished=len(done), detected=k,
                   not_detected=int((outcome == Outcome.NOT_DETECTED.value).sum()),
                   undetermined=int((outcome == Outcome.UNDETERMINED.value).sum()),
                   seeds=f"{k}/{len(done)}")
        for field in fields:
            if verdict_key(field) not in done:
                continue
            for name, values in _columns(done[verdict_key(field)], field).items():
                mean, low, high = interval(values, support=ranges.get(field, UNBOUNDED))
                row.update({f"{name}_mean": mean, f"{name}_ci_low": low,
                            f"{name}_ci_high": high})
        rows.append(row)
    return pd.DataFrame(rows)


def format_cells(cells: pd.DataFrame, axes: list[str], fields: tuple[str, ...]) -> str:
    """The cells as console lines, e.g.
    'lr=0.1: 3/3 seeds detected; fraction_within 0.96 [0.93, 0.99]'."""
    lines = []
    for _, row in cells.iterrows():
        where = ", ".join(f"{a.rsplit('.', 1)[-1]}={row[a]:g}" if isinstance(row[a], float)
                          else f"{a.rsplit('.', 1)[-1]}={row[a]}" for a in axes if a in row)
        parts = [f"{row['seeds']} seeds detected"]
        if row["undetermined"]:
            parts[0] += f" ({row['undetermined']} undetermined)"
        for name in (c[:-5] for c in cells.columns if c.endswith("_mean")):
            if name.split("[")[0] in fields and _finite(row[f"{name}_mean"]):
                bounds = (f" [{row[f'{name}_ci_low']:.3g}, {row[f'{name}_ci_high']:.3g}]"
                          if _finite(row[f"{name}_ci_low"]) else "")
                parts.append(f"{name} {row[f'{name}_mean']:.3g}{bounds}")
        lines.append(f"  {where or 'all runs'}: " + "; ".join(parts))
    return "\n".join([f"verdicts across seeds ({CONFIDENCE:.0%} intervals):", *lines])
