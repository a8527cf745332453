"""Edge-of-stability figure in the style of Cohen et al. (2021), Figure 1: sharpness against step
for each step size with its dashed 2/eta line in the same colour, train loss beneath."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dynamics_lab.phenomena.curves import first_column
from dynamics_lab.phenomena.edge_of_stability.detector import LOSSES, SHARPNESS, THRESHOLD
from dynamics_lab.phenomena.plotting import colors, pyplot, save

LR = "optim.lr"
Run = tuple[str, pd.Series, pd.DataFrame]  # label, summary-table row, metrics


def eos_runs(view) -> list[Run]:
    """(label, table row, metrics) per step size, lowest seed, other swept keys at their middle."""
    table = view.centre([LR])
    if LR in table:
        table = table.sort_values(LR)
    runs = []
    for _, row in table.iterrows():
        frame = view.metrics(row["run_id"])
        if frame is not None:
            label = f"eta={row[LR]:g}" if LR in row else row["run_id"]
            runs.append((label, row, frame))
    return runs


def _column(frame: pd.DataFrame, column: str | None) -> pd.DataFrame:
    return frame[["step", column]].dropna() if column else frame.iloc[:0]


def threshold_of(row: pd.Series, frame: pd.DataFrame) -> float | None:
    logged = _column(frame, first_column(frame, (THRESHOLD,)))
    if len(logged):
        return float(logged[THRESHOLD].iloc[-1])
    value = row.get("threshold")
    return float(value) if value is not None and pd.notna(value) else None


def sharpness_figure(runs: list[Run], path: Path) -> Path:
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    palette = colors()
    preconditioned = False
    for i, (label, row, frame) in enumerate(runs):
        colour = palette[i % len(palette)]
        column = first_column(frame, SHARPNESS)
        threshold = threshold_of(row, frame)
        if column is not None:
            preconditioned |= column == SHARPNESS[0]
            data = _column(frame, column)
            shown = f"{label} (threshold {threshold:.3g})" if threshold is not None else label
            top.plot(data["step"], data[column], color=colour, lw=1.3, label=shown)
        if threshold is not None:
            top.axhline(threshold, color=colour, ls="--", lw=1)
        loss = _column(frame, first_column(frame, LOSSES))
        if len(loss):
            bottom.plot(loss["step"], loss.iloc[:, 1], color=colour, lw=1, label=label)
    top.set_ylabel("preconditioned sharpness" if preconditioned
                   else "sharpness (top Hessian eigenvalue)")
    top.set_title("sharpness rises to the stability threshold (dashed: 2/eta) and hovers there",
                  fontsize=10)
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.set_yscale("log")
    bottom.set_ylabel("train loss")
    bottom.set_xlabel("step")
    bottom.grid(alpha=0.3)
    return save(fig, path)


def write_figures(view) -> list[Path]:
    runs = eos_runs(view)
    return [sharpness_figure(runs, view.out / "sharpness.png")] if runs else []
