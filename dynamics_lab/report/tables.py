"""Runs on disk -> pandas tables: one row per run with swept values, status and verdict."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dynamics_lab.frames import find_sweeps, run_row
from dynamics_lab.phenomena.columns import published
from dynamics_lab.tracking.rundir import MANIFEST, RunDir, RunDirError, read_json

MISSING = "missing"  # not a run status: the report could not read the run directory


def latest_sweep(root: Path, min_runs: int = 1) -> Path | None:
    """The newest sweep under `root` with at least `min_runs` runs (falls back to any)."""
    sweeps = find_sweeps(root)
    big = [s for s in sweeps if len(read_json(s / MANIFEST).get("runs", [])) >= min_runs]
    return (big or sweeps or [None])[-1]


def sweep_table(sweep_dir: Path) -> pd.DataFrame:
    """All runs of one sweep, in manifest order, as frames reads a run's row (verdict fields as
    `verdict/<field>`); unreadable runs show up as such."""
    manifest = read_json(Path(sweep_dir) / MANIFEST)
    rows = []
    for entry in manifest["runs"]:
        run_dir = Path(sweep_dir) / entry["run_id"]
        try:
            rows.append(run_row(RunDir.open(run_dir), entry["overrides"]))
        except RunDirError as exc:
            rows.append({"run_id": entry["run_id"], **entry["overrides"], "status": MISSING,
                         "error": str(exc)})
    return pd.DataFrame(rows)


def write_summary(table: pd.DataFrame, path: Path) -> Path:
    """summary.csv: the table as results/ publishes it, verdict fields bare (`published`: the
    one place a table drops the `verdict/` prefix)."""
    published(table).to_csv(path, index=False)
    return Path(path)
