"""What the shared figure helpers know of a run besides its metrics, attached by the report to
the frames it hands to the phenomena (`DataFrame.attrs`, which pandas carries through copies):

- a run's metrics: `run_id`, `verdict` (its verdict fields, for marking the key steps),
  `seed_runs` (a callable giving the metrics of every seed at the same grid point, for bands)
  and `grid_points` (how many the sweep has, so a figure of a few says it shows a few);
- the sweep's table of finished runs: `runs`, every run of the sweep with its status, so a
  phase diagram tells failed and missing cells from ones that never showed the phenomenon.

Phenomena need not know any of it: `phenomena/plotting.py` uses what is there."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from dynamics_lab.phenomena.columns import verdict_of

TEXT = ("phenomenon", "summary", "reason")  # verdict fields that are words, not marks


def verdict_fields(row: pd.Series) -> dict:
    """The verdict part of a run's table row under the fields' own names, without its words."""
    return {k: v for k, v in verdict_of(row).items() if k not in TEXT}


def attach(frame: pd.DataFrame, run_id: str, table: pd.DataFrame, axes: list[str],
           load: Callable[[str], pd.DataFrame | None]) -> pd.DataFrame:
    """`frame` with run_id, verdict and seed_runs in its attrs (module docstring)."""
    rows = table[table["run_id"] == run_id]
    if not len(rows):
        return frame
    row = rows.iloc[0]
    keys = [a for a in axes if a != "seed" and a in table]
    same = table
    for key in keys:
        same = same[same[key].astype(str) == str(row[key])]
    siblings = list(same["run_id"])

    def seed_runs() -> list[pd.DataFrame]:
        frames = [frame if r == run_id else load(r, attach_context=False) for r in siblings]
        return [f for f in frames if f is not None]

    grid_points = len(table[keys].drop_duplicates()) if keys else 1
    frame.attrs.update(run_id=run_id, verdict=verdict_fields(row), seed_runs=seed_runs,
                       seeds=len(siblings), grid_points=grid_points)
    return frame
