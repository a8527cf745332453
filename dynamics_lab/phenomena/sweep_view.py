"""What a phenomenon's figures get from the report: the finished runs of one sweep as a table,
the swept keys, where to write, and loaders for one run's metrics and config (so phenomena never
read run directories themselves)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


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
