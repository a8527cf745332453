"""Edge-of-stability report in the style of Cohen et al. (2021), Figure 1: sharpness against step
for each step size with its dashed 2/eta line in the same colour, train loss beneath."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dynamics_lab.phenomena.edge_of_stability import SHARPNESS, THRESHOLD, series
from dynamics_lab.report.figures import plt, save  # figures selects the headless backend
from dynamics_lab.tracking.metrics import read_metrics

LR = "optim.lr"
Run = tuple[str, pd.Series, pd.DataFrame]  # label, summary-table row, metrics


def eos_runs(table: pd.DataFrame, sweep_dir: Path, axes: list[str]) -> list[Run]:
    """(label, table row, metrics) per step size, lowest seed, other swept axes at their middle."""
    ok = table[table["status"].isin(["completed", "diverged"])]
    if "seed" in ok:
        ok = ok[ok["seed"] == ok["seed"].min()]
    for axis in (a for a in axes if a != LR):
        values = sorted(ok[axis].unique())
        if values:
            ok = ok[ok[axis] == values[len(values) // 2]]
    if LR in ok:
        ok = ok.sort_values(LR)
    runs = []
    for _, row in ok.iterrows():
        path = Path(sweep_dir) / row["run_id"] / "metrics.csv"
        if path.exists():
            label = f"eta={row[LR]:g}" if LR in row else row["run_id"]
            runs.append((label, row, read_metrics(path)))
    return runs


def threshold_of(row: pd.Series, frame: pd.DataFrame) -> float | None:
    logged = series(frame, THRESHOLD)
    if len(logged):
        return float(logged[THRESHOLD].iloc[-1])
    value = row.get("threshold")
    return float(value) if value is not None and pd.notna(value) else None


def sharpness_figure(runs: list[Run], path: Path) -> Path:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    preconditioned = False
    for i, (label, row, frame) in enumerate(runs):
        colour = colours[i % len(colours)]
        column = next((c for c in SHARPNESS if len(series(frame, c))), None)
        threshold = threshold_of(row, frame)
        if column is not None:
            preconditioned |= column == SHARPNESS[0]
            data = series(frame, column)
            shown = f"{label} (threshold {threshold:.3g})" if threshold is not None else label
            top.plot(data["step"], data[column], color=colour, lw=1.3, label=shown)
        if threshold is not None:
            top.axhline(threshold, color=colour, ls="--", lw=1)
        loss = series(frame, "train/batch_loss")
        if not len(loss):
            loss = series(frame, "train/loss")
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


def edge_of_stability_figures(table: pd.DataFrame, sweep_dir: Path, out: Path,
                              axes: list[str]) -> list[Path]:
    runs = eos_runs(table, sweep_dir, axes)
    return [sharpness_figure(runs, out / "sharpness.png")] if runs else []
