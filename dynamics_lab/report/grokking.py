"""Grokking report: accuracy curves of representative runs, and delay over the swept axes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dynamics_lab.report.figures import curves, phase_diagram
from dynamics_lab.report.selection import representative_runs


def grokking_figures(table: pd.DataFrame, sweep_dir: Path, out: Path,
                     axes: list[str]) -> list[Path]:
    written = []
    runs = representative_runs(table, sweep_dir, axes)
    if runs:
        written.append(curves(
            runs, [("train/acc", "train"), ("val/acc", "val")], out / "accuracy_curves.png",
            title="grokking: train vs validation accuracy", ylabel="accuracy"))
    if len(axes) >= 2 and "delay_ratio" in table:
        grokked = table.assign(delay=table["delay_ratio"].where(table["detected"] == True))  # noqa: E712
        written.append(phase_diagram(
            grokked, axes[0], axes[1], "delay", out / "phase_diagram.png",
            title="grokking delay (generalization step / fit step); '-' = did not grok",
            annotate="{:.1f}x"))
    return written
