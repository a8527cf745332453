"""Runs on disk -> pandas tables: one row per run with swept values, status and verdict."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dynamics_lab.phenomena.base import Outcome
from dynamics_lab.tracking.rundir import MANIFEST, RunDir, RunDirError, read_json

VERDICT_SKIP = ("phenomenon",)
MISSING = "missing"  # not a run status: the report could not read the run directory


def find_sweeps(root: Path) -> list[Path]:
    """Sweep directories (those holding a manifest) under `root`, oldest first."""
    root = Path(root)
    if (root / MANIFEST).is_file():
        return [root]
    return sorted((p.parent for p in root.rglob(MANIFEST)), key=lambda p: p.name)


def latest_sweep(root: Path, min_runs: int = 1) -> Path | None:
    """The newest sweep under `root` with at least `min_runs` runs (falls back to any)."""
    sweeps = find_sweeps(root)
    big = [s for s in sweeps if len(read_json(s / MANIFEST).get("runs", [])) >= min_runs]
    return (big or sweeps or [None])[-1]


def run_row(run_dir: Path, overrides: dict | None = None) -> dict:
    """One run as a flat dict: identity, swept values, status, wall time, verdict fields."""
    run = RunDir.open(run_dir)
    meta = run.meta
    row = {"run_id": run.path.name, "sweep_id": run.path.parent.name}
    row.update(overrides or {})
    row.update(status=meta.get("status"), wall_time_s=meta.get("wall_time_s"),
               error=meta.get("error"))
    verdict = run.verdict() or {}
    if verdict and "outcome" not in verdict:  # written before verdicts had three outcomes
        verdict["outcome"] = (Outcome.DETECTED if verdict.get("detected")
                              else Outcome.NOT_DETECTED).value
    for key, value in verdict.items():
        if key not in VERDICT_SKIP:
            row[key] = value
    return row


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
