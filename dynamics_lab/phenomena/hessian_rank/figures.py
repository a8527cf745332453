"""Hessian-rank figures in the manner of Singh et al. (2021): rank over parameters against width,
one colour per depth, measured (dots) beside the closed form (lines); and measured rank against
predicted rank for every run, with the parameter count for scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dynamics_lab.phenomena.columns import verdict_key
from dynamics_lab.phenomena.figure_marks import label, title
from dynamics_lab.phenomena.plotting import colors, pyplot, save

WIDTH, DEPTH = "model.width", "model.depth"
# The verdict fields drawn, as the run table names them.
MEASURED, PREDICTED, N_PARAMS, PREDICTED_OUTER, MEASURED_OUTER = (verdict_key(f) for f in (
    "measured_rank", "predicted_rank", "n_params", "predicted_outer_rank", "measured_outer_rank"))


def _numeric(table: pd.DataFrame, *columns: str) -> pd.DataFrame:
    present = [c for c in columns if c in table]
    out = table.copy()
    for c in present:
        out[c] = pd.to_numeric(out[c], errors="coerce")
    return out.dropna(subset=[c for c in present if c in (MEASURED, PREDICTED)])


def fraction_figure(view, table: pd.DataFrame, x: str, path: Path) -> Path:
    """Rank / parameters against `x`, one colour per depth: the formula as a line, measured
    Hessian ranks as dots, the Gauss-Newton part dashed (formula) and as crosses (measured)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    palette = colors()
    groups = table.groupby(DEPTH) if DEPTH in table else [(None, table)]
    for i, (depth, part) in enumerate(groups):
        part = part.sort_values(x)
        colour = palette[i % len(palette)]
        name = f"depth {depth:g}" if depth is not None else "runs"
        formula = part.groupby(x)[[PREDICTED, N_PARAMS]].first()
        ax.plot(formula.index, formula[PREDICTED] / formula[N_PARAMS], "-",
                color=colour, lw=1.4, label=f"{name}: formula")
        ax.plot(part[x], part[MEASURED] / part[N_PARAMS], "o", color=colour, ms=6,
                mfc="none", label=f"{name}: measured")
        if PREDICTED_OUTER in part:
            outer = part.groupby(x)[[PREDICTED_OUTER, N_PARAMS]].first()
            ax.plot(outer.index, outer[PREDICTED_OUTER] / outer[N_PARAMS], "--",
                    color=colour, lw=0.9)
        if MEASURED_OUTER in part and part[MEASURED_OUTER].notna().any():
            ax.plot(part[x], part[MEASURED_OUTER] / part[N_PARAMS], "x", color=colour,
                    ms=5)
    ax.set_xscale("log")
    ticks = sorted(table[x].unique())
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_ylim(0, 1.05)
    label(ax, x)
    ax.set_ylabel("rank / number of parameters")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    title(fig, "Hessian rank (solid, dots) and its Gauss-Newton part (dashed, crosses)",
          f"{view.every_run(table)}, each a dot", fontsize=9)
    return save(fig, path)


def scatter_figure(view, table: pd.DataFrame, path: Path) -> Path:
    """Measured against predicted rank for every run (y = x: the formula), parameters in grey."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    pred, meas = table[PREDICTED].to_numpy(float), table[MEASURED].to_numpy(float)
    ax.loglog(pred, table[N_PARAMS].to_numpy(float), "+", color="0.6", ms=6,
              label="number of parameters")
    ax.loglog(pred, meas, "o", color="tab:blue", ms=5, label="measured Hessian rank")
    finite = np.concatenate([pred, meas])
    lo, hi = np.nanmin(finite) / 1.5, np.nanmax(table[N_PARAMS].to_numpy(float)) * 1.5
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="rank = formula")
    ax.set_xlabel("predicted rank (Singh et al. 2021)")
    ax.set_ylabel("measured rank; number of parameters")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    title(fig, "measured Hessian rank against the closed form", view.every_run(table))
    return save(fig, path)


def write_figures(view) -> list[Path]:
    table = _numeric(view.table, MEASURED, PREDICTED, N_PARAMS,
                     PREDICTED_OUTER, MEASURED_OUTER, WIDTH, DEPTH)
    if table.empty:
        return []
    x = WIDTH if WIDTH in table and table[WIDTH].nunique() > 1 else N_PARAMS
    return [fraction_figure(view, table, x, view.out / "rank_fraction.png"),
            scatter_figure(view, table, view.out / "rank_vs_formula.png")]
