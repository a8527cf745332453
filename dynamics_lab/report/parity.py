"""Hidden-progress report: loss and relevant-feature concentration on a shared step axis."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dynamics_lab.report.figures import plt, save
from dynamics_lab.tracking.metrics import read_metrics

MASSES = (("features/relevant_mass_top10", "relevant mass, top 10%", "tab:red"),
          ("features/relevant_mass", "relevant mass, mean", "tab:purple"))


def _runs(table: pd.DataFrame, sweep_dir: Path, axes: list[str], limit: int = 6) -> list:
    """(label, metrics, verdict row) for up to `limit` finished runs of the lowest seed."""
    done = table[table["status"].isin(["completed", "diverged"])]
    if "seed" in done:
        done = done[done["seed"] == done["seed"].min()]
    runs = []
    for _, row in done.head(limit).iterrows():
        path = Path(sweep_dir) / row["run_id"] / "metrics.csv"
        if path.exists():
            label = ", ".join(f"{a.rsplit('.', 1)[-1]}={row[a]}" for a in axes) or row["run_id"]
            runs.append((label, read_metrics(path), row))
    return runs


def concentration_panels(runs: list, path: Path) -> Path:
    """Per run: test loss (left) and relevant mass, mean and top decile (right); drop marked."""
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
        verdict = "hidden progress" if row.get("detected") is True else "no hidden progress"
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


def parity_figures(table: pd.DataFrame, sweep_dir: Path, out: Path,
                   axes: list[str]) -> list[Path]:
    runs = _runs(table, sweep_dir, axes)
    return [concentration_panels(runs, out / "concentration_vs_loss.png")] if runs else []
