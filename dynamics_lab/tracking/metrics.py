"""Crash-safe local metrics: one CSV row per logged step, on disk as soon as it is logged.

Reading and writing need only pandas (imported on first read; `last_metrics` needs none, nor
`last_run_metrics`, which reads a parquet with pyarrow alone); the Lightning logger lives in
`metrics_logger` (imported on first use of `LocalMetricsLogger`), so notebooks and `dynlab show`
load without Lightning."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dynamics_lab.tracking.rundir import RunDirError

if TYPE_CHECKING:
    import pandas as pd

STEP = "step"


class MetricsFile:
    """Append-only rows keyed by step; metrics logged at the same step merge into one row.

    Nothing already on disk is ever rewritten in place: a second batch of metrics for the
    current step appends the merged row again (readers keep the last value per step), and a new
    column rewrites the file atomically. `compact()` leaves exactly one row per step. So a
    process killed at any instant leaves every row it logged, at worst a torn last line, which
    readers drop.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.columns: list[str] = [STEP]
        self.last: dict[str, Any] | None = None
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
            row = {**self.last, **metrics}
        else:
            row = {STEP: step, **metrics}
        new = [k for k in metrics if k not in self.columns]
        if new:
            self.columns += sorted(new)
            self._rewrite(read_metrics(self.path).to_dict("records") + [row])
        else:
            with open(self.path, "a") as f:
                f.write(self._format(row))
        self.last = row

    def compact(self) -> None:
        """Rewrite with exactly one row per step (atomic)."""
        self._rewrite(read_metrics(self.path).to_dict("records"))

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after `step` (a resumed run will log them again)."""
        rows = [r for r in read_metrics(self.path).to_dict("records") if r[STEP] <= step]
        self._rewrite(rows)
        self.last = rows[-1] if rows else None

    def _format(self, row: dict[str, Any]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([_cell(row.get(c)) for c in self.columns])
        return buffer.getvalue()

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(",".join(self.columns) + "\n")
            for row in rows:
                f.write(self._format(row))
        os.replace(tmp, self.path)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


class MetricsError(RunDirError):
    """A metrics.csv that does not parse; the message names the file and the line."""


def _bad_line(path: Path, text: str) -> str:
    """Where and why `text` is not a metrics table: the first row with a wrong number of fields
    or a cell that is not a number."""
    rows = csv.reader(io.StringIO(text))
    header = next(rows, [])
    if STEP not in header:
        return f"{path}:1: no '{STEP}' column in the header"
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            return f"{path}:{line}: {len(row)} fields where the header has {len(header)}"
        for column, cell in zip(header, row):
            try:
                float(cell or "nan")
            except ValueError:
                return f"{path}:{line}: {column}={cell!r} is not a number"
    return f"{path}: not a metrics table"


def read_metrics(path: Path | str) -> pd.DataFrame:
    """A run's metrics as a DataFrame, one row per step (a run dir or the CSV itself).
    A file that does not parse is a MetricsError naming the file and line."""
    import pandas as pd
    from pandas.api.types import is_numeric_dtype

    path = Path(path)
    if path.is_dir():
        path = path / "metrics.csv"
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # a torn last line from a killed writer
    if not text:
        return pd.DataFrame(columns=[STEP])
    try:
        frame = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, UnicodeDecodeError):
        raise MetricsError(_bad_line(path, text)) from None
    width = len(frame.columns)
    numeric = not len(frame) or all(map(is_numeric_dtype, frame.dtypes))  # empty: dtype object
    if (STEP not in frame.columns or not numeric
            or any(line.count(",") != width - 1 for line in text.splitlines() if '"' not in line)):
        raise MetricsError(_bad_line(path, text))
    if len(frame) and frame[STEP].duplicated().any():
        # Merged rows are appended again, and a resumed run may log a step twice:
        # the last non-missing value of each metric wins.
        frame = frame.groupby(STEP, as_index=False, sort=False).last()
    return frame.sort_values(STEP, kind="stable").reset_index(drop=True)


def last_metrics(path: Path | str) -> tuple[int, dict[str, float]] | None:
    """(last step, last logged value of every metric) of a metrics.csv, read row by row without
    pandas (what `dynlab show` prints); None for a file without rows. A cell that is not a
    number is a MetricsError naming the file and line."""
    path = Path(path)
    text = path.read_text()
    text = text[: text.rfind("\n") + 1]  # a torn last line from a killed writer
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if not header:
        return None
    if STEP not in header:
        raise MetricsError(_bad_line(path, text))
    last: dict[str, float] = {}
    step = None
    for row in rows:
        if len(row) != len(header):
            raise MetricsError(_bad_line(path, text))
        for column, cell in zip(header, row):
            if cell:
                try:
                    last[column] = float(cell)
                except ValueError:
                    raise MetricsError(_bad_line(path, text)) from None
        step = last.get(STEP, step)
    if step is None:
        return None
    return int(last.pop(STEP)), last


def last_run_metrics(csv_path: Path, parquet_path: Path) -> tuple[int, dict[str, float]] | None:
    """`last_metrics` of a run: from its metrics.csv (the record, appended to on resume), else
    from its metrics.parquet (a run kept or copied without the CSV), read with pyarrow and
    without pandas; None when it has neither or no rows. A parquet that does not read is a
    MetricsError naming the file."""
    if Path(csv_path).exists():
        return last_metrics(csv_path)
    if not Path(parquet_path).is_file():
        return None
    import pyarrow.parquet as pq

    try:  # ParquetFile, not read_table: the latter imports pandas
        with pq.ParquetFile(parquet_path) as file:
            columns = file.read().to_pydict()
    except Exception as exc:  # pyarrow's errors share no base class worth naming
        raise MetricsError(f"{parquet_path}: not a metrics table ({exc})") from None
    if STEP not in columns:
        raise MetricsError(f"{parquet_path}: no '{STEP}' column")
    steps = [s for s in columns.pop(STEP) if s is not None]
    if not steps:
        return None
    last: dict[str, float] = {}
    for column, values in columns.items():  # one row per step, in step order (write_parquet)
        present = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
        if present:
            last[column] = float(present[-1])
    return int(max(steps)), last


def write_parquet(csv_path: Path, parquet_path: Path) -> bool:
    """metrics.csv -> metrics.parquet (one row per step), atomically; False, with no parquet
    left behind, when the CSV does not parse (the CSV stays the record)."""
    parquet_path = Path(parquet_path)
    try:
        frame = read_metrics(csv_path)
    except (OSError, MetricsError):
        parquet_path.unlink(missing_ok=True)
        return False
    tmp = parquet_path.with_name(f".{parquet_path.name}.{os.getpid()}.tmp")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, parquet_path)
    except Exception:  # a derived copy: it must never keep a run from recording its ending
        tmp.unlink(missing_ok=True)
        parquet_path.unlink(missing_ok=True)
        return False
    return True


def read_run_metrics(run_dir: Path | str) -> pd.DataFrame:
    """A run's metrics, from metrics.parquet when the run wrote it and it is at least as new as
    metrics.csv (a resumed run appends to the CSV), else from the CSV."""
    import pandas as pd

    run_dir = Path(run_dir)
    csv_path, parquet = run_dir / "metrics.csv", run_dir / "metrics.parquet"
    try:
        if parquet.is_file() and (not csv_path.exists()
                                  or parquet.stat().st_mtime >= csv_path.stat().st_mtime):
            return pd.read_parquet(parquet)
    except Exception:  # a torn or foreign parquet: the CSV is the record
        pass
    return read_metrics(csv_path)


def __getattr__(name: str):
    if name == "LocalMetricsLogger":  # the Lightning side, imported only when a run needs it
        from dynamics_lab.tracking.metrics_logger import LocalMetricsLogger

        return LocalMetricsLogger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
