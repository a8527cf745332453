"""What a phenomenon's figures get from the report: the finished runs of one sweep as a table,
the swept keys, where to write, and loaders for one run's metrics and config (so phenomena never
read run directories themselves); which runs a figure shows, their seeds, and the words that
name that selection in its title."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dynamics_lab.phenomena.labels import words

Run = tuple[str, pd.Series, pd.DataFrame]  # label, table row, metrics


@dataclass
class SweepView:
    """The finished runs of a sweep, one row per run: run_id, swept values, seed, verdict."""

    table: pd.DataFrame
    axes: list[str]  # the swept config keys, in grid order
    out: Path
    load_metrics: Callable[[str], pd.DataFrame | None]  # run_id -> metrics table (None: absent)
    load_config: Callable[[str], dict]  # run_id -> resolved config dict

    def metrics(self, run_id: str) -> pd.DataFrame | None:
        return self.load_metrics(run_id)

    def config(self, run_id: str) -> dict:
        return self.load_config(run_id)

    def first_seed(self) -> pd.DataFrame:
        """The runs of the lowest seed: one per grid point."""
        table = self.table
        return table[table["seed"] == table["seed"].min()] if "seed" in table else table

    def centre(self, keep: list[str]) -> pd.DataFrame:
        """Lowest-seed runs with every swept key not in `keep` held at its middle value."""
        table = self.first_seed()
        for axis in (a for a in self.axes if a not in keep):
            values = sorted(table[axis].dropna().unique())
            if values:
                table = table[table[axis] == values[len(values) // 2]]
        return table

    def label(self, row: pd.Series) -> str:
        """'wd=1, train_fraction=0.4': the swept values of a run, last key segment only."""
        parts = [f"{a.rsplit('.', 1)[-1]}={_short(row[a])}" for a in self.axes if a in row]
        return ", ".join(parts) or str(row["run_id"])

    def runs(self, table: pd.DataFrame | None = None, by: str | None = None,
             limit: int | None = None) -> list[Run]:
        """(label, row, metrics) of each run of `table` (default: the lowest seed's) with its
        metrics, sorted by the swept key `by` when given, at most `limit`."""
        table = self.first_seed() if table is None else table
        if by is not None and by in table:
            table = table.sort_values(by, kind="stable")
        found = []
        for _, row in table.iterrows():
            frame = self.metrics(row["run_id"])
            if frame is not None:
                found.append((self.label(row), row, frame))
        return found[:limit] if limit is not None else found

    def point(self, row: pd.Series) -> pd.DataFrame:
        """The runs at the grid point of `row`: every seed of the same swept values."""
        same = self.table
        for key in (a for a in self.axes if a != "seed" and a in same and a in row):
            same = same[same[key].astype(str) == str(row[key])]
        return same

    def seeds(self, row: pd.Series) -> list[pd.DataFrame]:
        """The metrics of every seed at the grid point of `row` (for seed bands)."""
        frames = [self.metrics(r) for r in self.point(row)["run_id"]]
        return [f for f in frames if f is not None]

    def grid_points(self, table: pd.DataFrame | None = None) -> int:
        table = self.table if table is None else table
        keys = [a for a in self.axes if a != "seed" and a in table]
        return len(table[keys].drop_duplicates()) if keys and len(table) else min(len(table), 1)

    def selection(self, rows: pd.DataFrame | list) -> str:
        """Names the grid points a figure shows: 'all 4 grid points', or '3 of 12 grid points
        (weight decay = 1)' with the keys held fixed."""
        if isinstance(rows, list):  # of Run
            rows = pd.DataFrame([row for _, row, _ in rows])
        total, shown = self.grid_points(), self.grid_points(rows)
        if shown >= total:
            return f"all {total} grid point{'s' if total != 1 else ''}"
        held = [a for a in self.axes if a != "seed" and a in rows and len(rows)
                and rows[a].nunique() == 1 and self.table[a].nunique() > 1]
        fixed = ", ".join(f"{words(a)} = {_short(rows[a].iloc[0])}" for a in held)
        return f"{shown} of {total} grid points" + (f" ({fixed})" if fixed else "")

    def every_run(self, table: pd.DataFrame | None = None) -> str:
        """Names a figure that shows every finished run: 'every run: 12 (4 grid points x 3
        seeds)'."""
        table = self.table if table is None else table
        seeds = table["seed"].nunique() if "seed" in table else 1
        return f"every run: {len(table)} ({self.grid_points(table)} grid points x {seeds} seeds)"

    def representative(self, limit: int = 5) -> dict[str, pd.DataFrame]:
        """Label -> metrics for up to `limit` runs spanning the first swept key, the others held
        at their middle values."""
        runs = {}
        for _, row in self.centre(self.axes[:1]).head(limit).iterrows():
            frame = self.metrics(row["run_id"])
            if frame is not None:
                runs[self.label(row)] = frame
        return runs


def _short(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)
