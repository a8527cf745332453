"""Grokking figures: accuracy curves of representative runs, and the delay over the swept keys."""

from __future__ import annotations

from pathlib import Path

from dynamics_lab.phenomena.base import Outcome
from dynamics_lab.phenomena.plotting import curves, phase_diagram


def write_figures(view) -> list[Path]:
    written = []
    runs = view.representative()
    if runs:
        written.append(curves(
            runs, [("train/acc", "train"), ("val/acc", "val")], view.out / "accuracy_curves.png",
            title="grokking: train vs validation accuracy", ylabel="accuracy"))
    table, axes = view.table, view.axes
    if len(axes) >= 2 and "delay_ratio" in table:
        grokked = table.assign(delay=table["delay_ratio"].where(
            table["outcome"] == Outcome.DETECTED.value))
        written.append(phase_diagram(
            grokked, axes[0], axes[1], "delay", view.out / "phase_diagram.png",
            title="grokking delay (generalization step / fit step); '-' = did not grok",
            annotate="{:.1f}x"))
    return written
