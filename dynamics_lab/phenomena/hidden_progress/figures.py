"""Hidden-progress figure: loss and relevant-feature concentration on a shared step axis."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dynamics_lab.phenomena.base import Outcome
from dynamics_lab.phenomena.plotting import pyplot, save

MASSES = (("features/relevant_mass_top10", "relevant mass, top 10%", "tab:red"),
          ("features/relevant_mass", "relevant mass, mean", "tab:purple"))


def _runs(view, limit: int = 6) -> list:
    """(label, metrics, verdict row) for up to `limit` runs of the lowest seed."""
    runs = []
    for _, row in view.first_seed().head(limit).iterrows():
        frame = view.metrics(row["run_id"])
        if frame is not None:
            runs.append((view.label(row), frame, row))
    return runs


def concentration_panels(runs: list, path: Path) -> Path:
    """Per run: test loss (left) and relevant mass, mean and top decile (right); drop marked."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.4), squeeze=False)
    drops = [row.get("drop_step") for _, _, row in runs if pd.notna(row.get("drop_step"))]
    last = max(float(frame["step"].max()) for _, frame, _ in runs)
    # Zoom on the plateau and the drop: what follows a drop is a flat line.
    right = min(last, 2 * max(drops)) if drops else last
    for ax, (label, frame, row) in zip(axes[0], runs):
        lines = []
        if "val/loss" in frame:
            data = frame[["step", "val/loss"]].dropna()
            lines += ax.plot(data["step"], data["val/loss"], color="tab:blue", label="test loss")
        twin = ax.twinx()
        for column, name, color in MASSES:
            if column in frame:
                data = frame[["step", column]].dropna()
                lines += twin.plot(data["step"], data[column], color=color, label=name)
        twin.set_ylim(0, 1)
        drop = row.get("drop_step")
        if pd.notna(drop):
            ax.axvline(drop, color="gray", ls=":", lw=1)
        outcome = row.get("outcome")
        verdict = ("hidden progress" if outcome == Outcome.DETECTED.value else
                   "undetermined" if outcome == Outcome.UNDETERMINED.value else
                   "no hidden progress")
        ax.set_title(f"{label}\n{verdict}", fontsize=9)
        ax.set_xlabel("step")
        ax.set_xlim(0, right)
        ax.grid(alpha=0.3)
        if ax is axes[0][0]:
            ax.set_ylabel("test loss")
            ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="center right")
        if ax is axes[0][-1]:
            twin.set_ylabel("relevant weight mass")
    fig.suptitle("sparse parity: feature concentration grows on the loss plateau")
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

    runs = _runs(view)
    written = [concentration_panels(runs, view.out / "concentration_vs_loss.png")] if runs else []
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
