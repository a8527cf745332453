"""`dynlab report`: a sweep's runs -> summary table, verdicts across seeds, and the phenomenon's
own figures, written into results/EXPERIMENT/. What to draw is the phenomenon's business
(`Detector.figures`); this package finds the sweep, tabulates it and hands the finished runs over
as a `SweepView`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from dynamics_lab.phenomena import build
from dynamics_lab.phenomena.sweep_view import SweepView
from dynamics_lab.report.cells import format_cells, seed_cells
from dynamics_lab.report.tables import find_sweeps, latest_sweep, sweep_table
from dynamics_lab.schema import ConfigError
from dynamics_lab.tracking.metrics import MetricsError, read_metrics
from dynamics_lab.tracking.rundir import FINISHED, RunDir, RunDirError, read_manifest


class ReportError(ValueError):
    """Nothing to report, or a directory that is not a sweep."""


def sweep_config(sweep_dir: Path, manifest: dict) -> dict:
    """The resolved config of the sweep's first readable run ({} when none is readable)."""
    for entry in manifest.get("runs", []):
        try:
            return RunDir.open(sweep_dir / entry["run_id"]).config()
        except RunDirError:
            continue
    return {}


def _loaders(sweep_dir: Path) -> tuple[Callable, Callable]:
    def metrics(run_id: str) -> pd.DataFrame | None:
        try:
            return read_metrics(Path(sweep_dir) / run_id)
        except (OSError, MetricsError):
            return None

    def config(run_id: str) -> dict:
        try:
            return RunDir.open(Path(sweep_dir) / run_id).config()
        except RunDirError:
            return {}

    return metrics, config


def write_report(runs_root: Path, out: Path, echo: Callable[[str], None] | None = None
                 ) -> list[Path]:
    """Write summary.csv, cells.csv (verdicts across seeds) and the phenomenon's figures for the
    newest sweep under runs_root; `echo` also prints the cells."""
    sweep_dir = latest_sweep(runs_root, min_runs=2)
    if sweep_dir is None:
        raise ReportError(f"no sweep found under '{runs_root}' (run `dynlab run ... --sweep`)")
    manifest = read_manifest(sweep_dir)
    config = sweep_config(sweep_dir, manifest)
    name = (config.get("phenomenon") or {}).get("name")
    table = sweep_table(sweep_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "summary.csv"]
    table.to_csv(written[0], index=False)
    if not name:
        return written
    try:
        detector = build(name, config)
    except ConfigError as exc:
        raise ReportError(f"cannot report this sweep: {exc}") from None
    axes = list(manifest.get("grid", {}))
    fields = detector.interval_fields
    cells = seed_cells(table, axes, fields)
    written.append(out / "cells.csv")
    cells.to_csv(written[-1], index=False)
    if echo is not None:
        echo(format_cells(cells, axes, fields))
    finished = table[table["status"].isin([s.value for s in FINISHED])]
    if len(finished):
        view = SweepView(finished.reset_index(drop=True), axes, out, *_loaders(sweep_dir))
        written += detector.figures(view)
    return written


__all__ = ["ReportError", "find_sweeps", "sweep_table", "write_report"]
