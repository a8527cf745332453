"""Figure helpers shared by the phenomena's report figures: headless pyplot, saving, metric
curves over steps and phase diagrams over two swept keys. matplotlib is imported on first use,
so detectors load without it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def pyplot():
    """matplotlib.pyplot on the headless Agg backend (reports are written without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def colors() -> list[str]:
    return pyplot().rcParams["axes.prop_cycle"].by_key()["color"]


def save(fig, path: Path) -> Path:
    plt = pyplot()
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def curves(runs: dict[str, pd.DataFrame], columns: Sequence[tuple[str, str]], path: Path,
           title: str = "", logx: bool = True, ylabel: str = "") -> Path:
    """One panel per run; each (column, label) drawn against step."""
    plt = pyplot()
    fig, axes = plt.subplots(1, max(len(runs), 1), figsize=(4 * max(len(runs), 1), 3.2),
                             sharey=True, squeeze=False)
    for ax, (name, frame) in zip(axes[0], runs.items()):
        for column, label in columns:
            if column in frame:
                data = frame[["step", column]].dropna()
                ax.plot(data["step"].clip(lower=1), data[column], label=label)
        if logx:
            ax.set_xscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save(fig, path)


def phase_diagram(table: pd.DataFrame, x: str, y: str, value: str, path: Path, title: str = "",
                  log_value: bool = True, missing_label: str = "-",
                  annotate: str | None = None) -> Path:
    """Heatmap of `value` over the grid (x, y), mean over seeds; empty cells are labelled."""
    plt = pyplot()
    pivot = table.pivot_table(index=y, columns=x, values=value, aggfunc="mean", dropna=False)
    xs, ys = sorted(table[x].dropna().unique()), sorted(table[y].dropna().unique())
    pivot = pivot.reindex(index=ys, columns=xs)
    data = pivot.to_numpy(dtype=float)
    shown = np.log10(data) if log_value else data
    fig, ax = plt.subplots(figsize=(1.3 * len(xs) + 2.5, 1.0 * len(ys) + 1.8))
    image = ax.imshow(np.ma.masked_invalid(shown), origin="lower", cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax, label=f"log10 {value}" if log_value else value)
    ax.set_xticks(range(len(xs)), [f"{v:g}" for v in xs])
    ax.set_yticks(range(len(ys)), [f"{v:g}" for v in ys])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    for i in range(len(ys)):
        for j in range(len(xs)):
            v = data[i, j]
            text = missing_label if not np.isfinite(v) else (annotate or "{:.3g}").format(v)
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if np.isfinite(v) else "black")
    if title:
        ax.set_title(title, fontsize=10)
    return save(fig, path)
