"""Crash-safe local metrics: one CSV row per logged step, on disk as soon as it is logged."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Optional

import pandas as pd
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

STEP = "step"


class MetricsFile:
    """Appends rows keyed by step; metrics logged at the same step merge into one row.

    The newest row is rewritten in place when more metrics arrive for its step, and the file
    is rewritten (atomically) only when a new column appears, so a killed process leaves every
    row it logged.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.columns: list[str] = [STEP]
        self.last: Optional[dict[str, Any]] = None
        self._last_offset = 0
        if self.path.exists() and self.path.stat().st_size:
            self._load_existing()
        else:
            self._rewrite([])

    def _load_existing(self) -> None:
        frame = read_metrics(self.path)
        self.columns = list(frame.columns)
        rows = frame.to_dict("records")
        self.last = rows[-1] if rows else None
        self._rewrite(rows)

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.last is not None and step == self.last[STEP]:
            self.last.update(metrics)
            row, rewrite_last = self.last, True
        else:
            row, rewrite_last = {STEP: step, **metrics}, False
        new = [k for k in metrics if k not in self.columns]
        if new:
            self.columns += sorted(new)
            rows = read_metrics(self.path).to_dict("records")
            rows = rows[:-1] + [row] if rewrite_last else rows + [row]
            self._rewrite(rows)
        else:
            self._write_row(row, truncate_at=self._last_offset if rewrite_last else None)
        self.last = row

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after `step` (a resumed run will log them again)."""
        rows = [r for r in read_metrics(self.path).to_dict("records") if r[STEP] <= step]
        self._rewrite(rows)
        self.last = rows[-1] if rows else None

    def _format(self, row: dict[str, Any]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer).writerow([_cell(row.get(c)) for c in self.columns])
        return buffer.getvalue()

    def _write_row(self, row: dict[str, Any], truncate_at: Optional[int]) -> None:
        with open(self.path, "r+") as f:
            if truncate_at is not None:
                f.seek(truncate_at)
                f.truncate()
            else:
                f.seek(0, os.SEEK_END)
            self._last_offset = f.tell()
            f.write(self._format(row))

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(",".join(self.columns) + "\n")
            for row in rows:
                self._last_offset = f.tell()
                f.write(self._format(row))
        os.replace(tmp, self.path)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


def read_metrics(path: Path | str) -> pd.DataFrame:
    """A run's metrics as a DataFrame, one row per step (a run dir or the CSV itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.csv"
    frame = pd.read_csv(path)
    if len(frame) and frame[STEP].duplicated().any():
        # A resumed run may log a step twice; the later value wins.
        frame = frame.groupby(STEP, as_index=False).last()
    return frame.sort_values(STEP, kind="stable").reset_index(drop=True)


class LocalMetricsLogger(Logger):
    """A Lightning logger writing `metrics.csv` into a run directory."""

    def __init__(self, run_dir: Path | str):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.file = MetricsFile(self.run_dir / "metrics.csv")

    @property
    def name(self) -> str:
        return "local"

    @property
    def version(self) -> str:
        return self.run_dir.name

    @property
    def save_dir(self) -> str:
        return str(self.run_dir)

    @property
    def experiment(self) -> MetricsFile:
        return self.file

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The resolved config is already in config.yaml."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: Optional[int] = None) -> None:
        values = {k: float(v) for k, v in metrics.items() if k != "epoch"}
        if values:
            self.file.log(values, step=int(step if step is not None else -1))
