"""Edge-of-stability figure in the style of Cohen et al. (2021), Figure 1: sharpness against step
for each step size with its dashed 2/eta line in the same colour, train loss beneath; each curve
the mean over its seeds with a 95% band, the lowest seed's crossing steps marked."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dynamics_lab.phenomena.columns import verdict_key
from dynamics_lab.phenomena.curves import first_column
from dynamics_lab.phenomena.edge_of_stability.detector import LOSSES, SHARPNESS, THRESHOLD
from dynamics_lab.phenomena.figure_marks import band, label, mark_steps, seeds_text, title
from dynamics_lab.phenomena.plotting import colors, pyplot, save
from dynamics_lab.phenomena.sweep_view import Run

LR = "optim.lr"


def eos_runs(view) -> list[Run]:
    """(label, table row, metrics) per step size, lowest seed, other swept keys at their middle."""
    return [(f"eta={row[LR]:g}" if LR in row else name, row, frame)
            for name, row, frame in view.runs(view.centre([LR]), by=LR)]


def _column(frame: pd.DataFrame, column: str | None) -> pd.DataFrame:
    return frame[["step", column]].dropna() if column else frame.iloc[:0]


def threshold_of(row: pd.Series, frame: pd.DataFrame) -> float | None:
    logged = _column(frame, first_column(frame, (THRESHOLD,)))
    if len(logged):
        return float(logged[THRESHOLD].iloc[-1])
    value = row.get(verdict_key("threshold"))
    return float(value) if value is not None and pd.notna(value) else None


def sharpness_figure(view, runs: list[Run], path: Path) -> Path:
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    palette = colors()
    preconditioned, counts = False, []
    for i, (name, row, frame) in enumerate(runs):
        colour = palette[i % len(palette)]
        seeds = view.seeds(row) or [frame]
        column = first_column(frame, SHARPNESS)
        threshold = threshold_of(row, frame)
        if column is not None:
            preconditioned |= column == SHARPNESS[0]
            shown = f"{name} (threshold {threshold:.3g})" if threshold is not None else name
            counts.append(band(top, seeds, column, colour, shown, lw=1.3))
        if threshold is not None:
            top.axhline(threshold, color=colour, ls="--", lw=1)
        for ax in (top, bottom):
            mark_steps(ax, row, color=colour, legend=False)
        loss = first_column(frame, LOSSES)
        if loss is not None:
            band(bottom, seeds, loss, colour, name, lw=1)
    top.set_ylabel("preconditioned sharpness" if preconditioned
                   else "sharpness (top Hessian eigenvalue)")
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.set_yscale("log")
    label(bottom, "step", "train/loss")
    bottom.grid(alpha=0.3)
    title(fig, "sharpness rises to the stability threshold (dashed: 2/eta) and hovers there",
          f"{view.selection(runs)}, {seeds_text(counts)}; vertical lines: the lowest seed's "
          "crossing step", fontsize=9)
    return save(fig, path)


def write_figures(view) -> list[Path]:
    runs = eos_runs(view)
    return [sharpness_figure(view, runs, view.out / "sharpness.png")] if runs else []
