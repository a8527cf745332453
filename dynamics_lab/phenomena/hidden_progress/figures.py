"""Hidden-progress figure: loss and relevant-feature concentration on a shared step axis."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dynamics_lab.phenomena.base import Outcome
from dynamics_lab.phenomena.columns import verdict_key
from dynamics_lab.phenomena.figure_marks import band, label, mark_steps, seeds_text, title
from dynamics_lab.phenomena.plotting import pyplot, save

MASSES = (("features/relevant_mass_top10", "relevant mass, top 10%", "tab:red"),
          ("features/relevant_mass", "relevant mass, mean", "tab:purple"))


def concentration_panels(view, runs: list, path: Path) -> Path:
    """Per run: test loss (left) and relevant mass, mean and top decile (right), each the mean
    over the grid point's seeds with a 95% band; the lowest seed's drop marked."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.4), squeeze=False)
    drop = verdict_key("drop_step")
    drops = [row.get(drop) for _, row, _ in runs if pd.notna(row.get(drop))]
    last = max(float(frame["step"].max()) for _, _, frame in runs)
    # Zoom on the plateau and the drop: what follows a drop is a flat line.
    right = min(last, 2 * max(drops)) if drops else last
    counts = []
    for ax, (name, row, frame) in zip(axes[0], runs):
        seeds = view.seeds(row) or [frame]
        counts.append(band(ax, seeds, "val/loss", "tab:blue", "test loss"))
        twin = ax.twinx()
        for column, text, color in MASSES:
            band(twin, seeds, column, color, text)
        twin.set_ylim(0, 1)
        mark_steps(ax, row)
        outcome = row.get(verdict_key("outcome"))
        verdict = ("hidden progress" if outcome == Outcome.DETECTED.value else
                   "undetermined" if outcome == Outcome.UNDETERMINED.value else
                   "no hidden progress")
        ax.set_title(f"{name}\n{verdict}", fontsize=9)
        label(ax, "step")
        ax.set_xlim(0, right)
        ax.grid(alpha=0.3)
        if ax is axes[0][0]:
            label(ax, y="val/loss")
            lines = [*ax.get_lines(), *twin.get_lines()]
            ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="center right")
        if ax is axes[0][-1]:
            twin.set_ylabel("relevant weight mass")
    title(fig, "sparse parity: feature concentration grows on the loss plateau",
          f"{view.selection(runs)} (lowest seed first), {seeds_text(counts)}; dashed: the "
          "lowest seed's drop step")
    return save(fig, path)


def write_figures(view) -> list[Path]:
    from dynamics_lab.phenomena.hidden_progress.scaling import (
        DIM,
        K,
        learning_cells,
        learning_table,
        scaling_figure,
        scaling_table,
    )

    runs = view.runs(limit=6)
    written = ([concentration_panels(view, runs, view.out / "concentration_vs_loss.png")]
               if runs else [])
    if DIM in view.axes and K in view.axes:
        learned = learning_table(view)
        fits = scaling_table(learned)
        written.append(view.out / "learning_scaling.csv")
        fits.to_csv(written[-1], index=False)
        written.append(view.out / "learning_steps.csv")
        learning_cells(learned).to_csv(written[-1], index=False)
        if learned[DIM].nunique() >= 2:
            written.append(scaling_figure(learned, fits, view.out / "learning_scaling.png"))
    return written
