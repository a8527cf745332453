"""A claim of a paper beside our number: what each phenomenon's `claim.py` returns for one row of
results/CLAIMS.md (the table is written by report/claims.py), and helpers to read a report's
cells.csv into one.

Status words (DESIGN.md, Evidence):
  reproduced     our interval agrees with the paper's claim and excludes the alternatives
  contradicted   our interval excludes the paper's claim
  inconclusive   the interval also covers the alternatives (or fewer than MIN_SEEDS seeds)
  not run        no report yet (e.g. a full profile that needs a GPU)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dynamics_lab.phenomena.columns import read_published

REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_RUN = (
    "reproduced", "contradicted", "inconclusive", "not run")
STATUSES = (REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_RUN)
MIN_SEEDS = 3  # fewer seeds than this make a claim inconclusive whatever its interval


@dataclass
class Claim:
    """One row of CLAIMS.md."""

    claim: str  # the paper's claim, in a line
    paper: str  # the paper's number (or form)
    ours: str  # our number with its 95% interval across seeds
    seeds: int  # seeds per grid point behind `ours`
    swept: str  # the swept variable and its range
    status: str
    note: str = ""  # why this status, in a line

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r}: choose one of {', '.join(STATUSES)}")
        if self.status in (REPRODUCED, CONTRADICTED) and self.seeds < MIN_SEEDS:
            self.note = (f"{self.note}; " if self.note else "") + (
                f"{self.status} in {self.seeds} seed(s), under the {MIN_SEEDS} a claim needs")
            self.status = INCONCLUSIVE


def not_run(claim: str, paper: str, why: str = "no report in results/") -> Claim:
    return Claim(claim, paper, "-", 0, "-", NOT_RUN, why)


def fmt(mean: float, low: float | None = None, high: float | None = None,
        digits: int = 3) -> str:
    """'0.93 [0.81, 1.05]', '0.93 (no interval)' or '-'."""
    if mean is None or not math.isfinite(float(mean)):
        return "-"
    text = f"{float(mean):.{digits}g}"
    if low is not None and high is not None and math.isfinite(float(low)) \
            and math.isfinite(float(high)):
        return f"{text} [{float(low):.{digits}g}, {float(high):.{digits}g}]"
    return f"{text} (no interval)"


def cell_value(row: pd.Series, field: str, digits: int = 3) -> str:
    """A cells.csv field as 'mean [low, high]'."""
    return fmt(row.get(f"{field}_mean"), row.get(f"{field}_ci_low"),
               row.get(f"{field}_ci_high"), digits)


def read_csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if Path(path).is_file() else None


def read_runs(results: Path) -> pd.DataFrame | None:
    """The run table of a report (its summary.csv) with the verdict fields as every run table
    names them, `verdict/<field>`; None without one."""
    return read_published(Path(results) / "summary.csv")


def seeds_of(cells: pd.DataFrame) -> int:
    """The fewest finished runs of any grid point (the seeds each number rests on)."""
    return int(cells["finished"].min()) if "finished" in cells and len(cells) else 0


def swept_range(cells: pd.DataFrame, axis: str) -> str:
    values = sorted(pd.to_numeric(cells[axis], errors="coerce").dropna().unique())
    if not values:
        return "-"
    short = axis.rsplit(".", 1)[-1]
    return (f"{short} {values[0]:g}..{values[-1]:g} ({len(values)} values)" if len(values) > 1
            else f"{short} = {values[0]:g}")
