"""`dynlab report`: a sweep's runs -> summary table -> figures, written into results/EXPERIMENT/."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from dynamics_lab.report.associative_memory import associative_memory_figures
from dynamics_lab.report.edge_of_stability import edge_of_stability_figures
from dynamics_lab.report.grokking import grokking_figures
from dynamics_lab.report.lazy_rich import lazy_rich_figures
from dynamics_lab.report.parity import parity_figures
from dynamics_lab.report.stepwise import stepwise_figures
from dynamics_lab.report.tables import find_sweeps, latest_sweep, sweep_table
from dynamics_lab.sweep.manifest import read_manifest
from dynamics_lab.tracking.rundir import RunDir, RunDirError

# phenomenon -> figure writer(table, sweep_dir, out_dir, swept axes) -> written paths
FIGURES: dict[str, Callable[[pd.DataFrame, Path, Path, list[str]], list[Path]]] = {
    "grokking": grokking_figures,
    "lazy_rich": lazy_rich_figures,
    "hidden_progress": parity_figures,
    "stepwise": stepwise_figures,
    "scaling_law": associative_memory_figures,
    "edge_of_stability": edge_of_stability_figures,
}


class ReportError(ValueError):
    """Nothing to report, or a directory that is not a sweep."""


def sweep_phenomenon(sweep_dir: Path, manifest: dict) -> str | None:
    """The phenomenon the sweep's runs were judged by (from the first run's config)."""
    for entry in manifest.get("runs", []):
        try:
            config = RunDir.open(sweep_dir / entry["run_id"]).config()
            return (config.get("phenomenon") or {}).get("name")
        except RunDirError:
            continue
    return None


def write_report(runs_root: Path, out: Path) -> list[Path]:
    """Write summary.csv and the phenomenon's figures for the newest sweep under runs_root."""
    sweep_dir = latest_sweep(runs_root, min_runs=2)
    if sweep_dir is None:
        raise ReportError(f"no sweep found under '{runs_root}' (run `dynlab run ... --sweep`)")
    manifest = read_manifest(sweep_dir)
    phenomenon = sweep_phenomenon(sweep_dir, manifest)
    table = sweep_table(sweep_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "summary.csv"]
    table.to_csv(written[0], index=False)
    axes = list(manifest.get("grid", {}))
    figures = FIGURES.get(phenomenon or "")
    if figures is None and phenomenon:
        raise ReportError(f"no figures defined for phenomenon '{phenomenon}'; "
                          f"known: {', '.join(sorted(FIGURES))}")
    if figures is not None:
        written += figures(table, sweep_dir, out, axes)
    return written


__all__ = ["FIGURES", "ReportError", "find_sweeps", "sweep_table", "write_report"]
