"""Runs on disk -> pandas tables: one row per run with swept values, status and verdict."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dynamics_lab.frames import find_sweeps, run_fields, verdict_fields
from dynamics_lab.tracking.rundir import MANIFEST, RunDir, RunDirError, read_json

VERDICT_SKIP = ("phenomenon",)
MISSING = "missing"  # not a run status: the report could not read the run directory


def latest_sweep(root: Path, min_runs: int = 1) -> Path | None:
    """The newest sweep under `root` with at least `min_runs` runs (falls back to any)."""
    sweeps = find_sweeps(root)
    big = [s for s in sweeps if len(read_json(s / MANIFEST).get("runs", [])) >= min_runs]
    return (big or sweeps or [None])[-1]


def run_row(run_dir: Path, overrides: dict | None = None) -> dict:
    """One run as a flat dict (frames' reader): identity, swept values, status, wall time, and
    the verdict's fields under their own names, the detector's, as phenomena's figures read them.
    """
    run = RunDir.open(run_dir)
    verdict = {k: v for k, v in verdict_fields(run).items() if k not in VERDICT_SKIP}
    return {**run_fields(run, overrides or {}), **verdict}


def sweep_table(sweep_dir: Path) -> pd.DataFrame:
    """All runs of one sweep, in manifest order; unreadable runs show up as such."""
    manifest = read_json(Path(sweep_dir) / MANIFEST)
    rows = []
    for entry in manifest["runs"]:
        run_dir = Path(sweep_dir) / entry["run_id"]
        try:
            rows.append(run_row(run_dir, entry["overrides"]))
        except RunDirError as exc:
            rows.append({"run_id": entry["run_id"], **entry["overrides"], "status": MISSING,
                         "error": str(exc)})
    return pd.DataFrame(rows)
