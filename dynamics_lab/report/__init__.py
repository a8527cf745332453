"""`dynlab report`: a sweep's runs -> summary table, verdicts across seeds, and the phenomenon's
own figures, written into results/EXPERIMENT/, and logged to W&B when it is on. What to draw is
the phenomenon's business (`Detector.figures`); this package finds the sweep, tabulates it and
hands the finished runs over as a `SweepView`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from dynamics_lab.phenomena import build
from dynamics_lab.phenomena.phase_map import report_section
from dynamics_lab.phenomena.sweep_view import SweepView
from dynamics_lab.report import context
from dynamics_lab.report.cells import format_cells, seed_cells
from dynamics_lab.report.layout import mirror_latest, sweep_report_dir
from dynamics_lab.report.summary import summarize_sweep
from dynamics_lab.report.tables import find_sweeps, latest_sweep, sweep_table, write_summary
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


def _loaders(sweep_dir: Path, echo: Callable[[str], None], table: pd.DataFrame,
             axes: list[str]) -> tuple[Callable, Callable]:
    skipped: set[str] = set()

    def metrics(run_id: str, attach_context: bool = True) -> pd.DataFrame | None:
        """The run's metrics, with its verdict and its seeds in attrs (report/context.py)."""
        try:
            frame = read_metrics(Path(sweep_dir) / run_id)
        except (OSError, MetricsError) as exc:
            if run_id not in skipped:  # figures ask for a run more than once; warn once
                skipped.add(run_id)
                echo(f"warning: skipping run {run_id} in the figures: {exc}")
            return None
        return context.attach(frame, run_id, table, axes, metrics) if attach_context else frame

    def config(run_id: str) -> dict:
        try:
            return RunDir.open(Path(sweep_dir) / run_id).config()
        except RunDirError:
            return {}

    return metrics, config


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg")  # what W&B shows as an image


def write_report(runs_root: Path, out: Path | None = None,
                 echo: Callable[[str], None] | None = None, wandb: bool | None = None,
                 results: Path | None = None) -> list[Path]:
    """Write summary.csv, cells.csv (verdicts across seeds) and the phenomenon's figures for the
    newest sweep under runs_root into `out`, or (without `out`) into results/<sweep_id>/ with
    `results` itself mirroring the newest sweep's report (report/layout.py); `echo` also prints
    the cells. With W&B on (`wandb`, else the sweep's `logging.wandb`, else a login) the figures
    and the summary table are also logged as one W&B run in the sweep's group."""
    from dynamics_lab.tracking.wandb import log_report, wandb_enabled

    echo = echo or (lambda line: None)
    if out is None and results is None:
        raise ReportError("write_report needs `out` or `results`")
    sweep_dir = latest_sweep(runs_root, min_runs=2)
    if sweep_dir is None:
        raise ReportError(f"no sweep found under '{runs_root}' (run `dynlab run ... --sweep`)")
    manifest = read_manifest(sweep_dir)
    config = sweep_config(sweep_dir, manifest)
    table = sweep_table(sweep_dir)
    written = _write_files(sweep_dir, manifest, config, table,
                           out or sweep_report_dir(results, sweep_dir.name), echo)
    if out is None:
        written += mirror_latest(results, sweep_dir.name, written)
        out = Path(results)
    if out.name == config.get("name"):  # results/<experiment>/: the claims table beside it
        from dynamics_lab.report.claims import write_claims

        written += [p for p in (write_claims(out.parent),) if p is not None]
    if wandb_enabled((config.get("logging") or {}).get("wandb") if wandb is None else wandb):
        images = [p for p in written if p.suffix in IMAGE_SUFFIXES]
        echo(log_report(sweep_dir, config, table, images))
    return written


def _write_files(sweep_dir: Path, manifest: dict, config: dict, table: pd.DataFrame, out: Path,
                 echo: Callable[[str], None]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [write_summary(table, out / "summary.csv")]
    name = (config.get("phenomenon") or {}).get("name")
    if not name:
        return written
    try:
        detector = build(name, config)
    except ConfigError as exc:
        raise ReportError(f"cannot report this sweep: {exc}") from None
    axes = list(manifest.get("grid", {}))
    fields = detector.interval_fields
    cells = seed_cells(table, axes, fields, detector.field_ranges)
    written.append(out / "cells.csv")
    cells.to_csv(written[-1], index=False)
    echo(format_cells(cells, axes, fields))
    finished = table[table["status"].isin([s.value for s in FINISHED])].reset_index(drop=True)
    if len(finished):
        finished.attrs["runs"] = table  # every run, failed ones too (report/context.py)
        view = SweepView(finished, axes, out, *_loaders(sweep_dir, echo, finished, axes))
        written += detector.figures(view)
        for line in detector.sweep_lines(view):
            echo(line)
    written += report_section(table, manifest, detector, out, echo)  # a `dynlab phase` search
    return written


__all__ = ["ReportError", "find_sweeps", "summarize_sweep", "sweep_table", "write_report"]
