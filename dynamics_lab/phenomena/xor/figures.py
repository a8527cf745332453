"""Find-then-tune figures: loss and signal alignment on a log step axis per input dimension (the
search and tuning phases shaded), and the search and tuning lengths against d with their fitted
exponents beside the paper's near-linear sample complexity."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from dynamics_lab.phenomena.growth import format_exponent, growth_exponent
from dynamics_lab.phenomena.plotting import pyplot, save

DIMENSION = "task.n"
# Glasgow (2023): d polylog(d) samples; at a fixed batch size, steps ~ d up to log factors.
PAPER_EXPONENT = 1.0
LENGTHS = (("search_length", "search (loss at log 2)", "tab:blue", "o"),
           ("tuning_length", "tuning (log 2 -> 0.1 log 2)", "tab:orange", "s"))


def _runs(view, limit: int = 5) -> list:
    """(label, metrics, verdict row) of the lowest seed, one per swept value, in order."""
    table = view.first_seed()
    if view.axes:
        table = table.sort_values(view.axes[0])
    runs = []
    for _, row in table.head(limit).iterrows():
        frame = view.metrics(row["run_id"])
        if frame is not None:
            runs.append((view.label(row), frame, row))
    return runs


def phase_panels(runs: list, path: Path) -> Path:
    """Per run: population loss (left, with log 2) and signal alignment (right) vs step."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(runs), figsize=(3.9 * len(runs), 3.5), squeeze=False)
    for ax, (label, frame, row) in zip(axes[0], runs):
        lines = []
        if "val/loss" in frame:
            data = frame[["step", "val/loss"]].dropna()
            lines += ax.plot(data["step"].clip(lower=1), data["val/loss"], color="tab:blue",
                             label="population loss")
        ax.axhline(math.log(2), color="tab:blue", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_ylim(0, 0.8)
        twin = ax.twinx()
        for column, name, color, style in (
                ("signal/alignment", "signal alignment", "tab:red", "-"),
                ("signal/random_level", "random level", "tab:red", ":")):
            if column in frame:
                data = frame[["step", column]].dropna()
                lines += twin.plot(data["step"].clip(lower=1), data[column], color=color,
                                   ls=style, label=name)
        twin.set_ylim(0, 1.05)
        end, tune = row.get("search_end"), row.get("tune_end")
        if pd.notna(end):
            ax.axvspan(1, end, color="tab:gray", alpha=0.12)
            if pd.notna(tune):
                ax.axvspan(end, tune, color="tab:orange", alpha=0.12)
        ax.set_title(f"{label}\n{_verdict_line(row)}", fontsize=8)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax is axes[0][0]:
            ax.set_ylabel("logistic loss (dotted: log 2)")
            ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="lower left")
        if ax is axes[0][-1]:
            twin.set_ylabel("max |cos(w_j, e_i +- e_j)|, output-weighted")
    fig.suptitle("XOR: SGD finds the signal directions at log 2 (grey), then tunes (orange)",
                 fontsize=10)
    return save(fig, path)


def _verdict_line(row: pd.Series) -> str:
    if row.get("outcome") != "detected":
        return str(row.get("outcome", ""))
    return f"search {row['search_length']:,.0f}, tuning {row['tuning_length']:,.0f} steps"


def scaling_table(table: pd.DataFrame, axis: str = DIMENSION) -> pd.DataFrame:
    """The search and tuning lengths of the detected runs fitted against d."""
    done = table[table.get("outcome") == "detected"] if "outcome" in table else table
    rows = []
    for column, *_ in LENGTHS:
        if axis in done and column in done:
            fit = growth_exponent(done[axis], done[column])
            search = column == "search_length"
            rows.append(dict(quantity=column, axis=axis, **fit,
                             paper=PAPER_EXPONENT if search else float("nan"),
                             paper_note="Glasgow 2023: d polylog(d) samples (near-linear)"
                             if search else ""))
    return pd.DataFrame(rows)


def scaling_figure(table: pd.DataFrame, fits: pd.DataFrame, path: Path,
                   axis: str = DIMENSION) -> Path:
    """Search and tuning lengths against d, log-log, with fits and a slope-1 reference."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4))
    done = table[table["outcome"] == "detected"]
    for column, name, color, marker in LENGTHS:
        if column not in done or done[column].isna().all():
            continue
        ax.loglog(done[axis], done[column], marker, color=color, ms=6, ls="none")
        fit = fits[fits["quantity"] == column]
        label = name
        if len(fit) and np.isfinite(fit.iloc[0]["exponent"]):
            f = fit.iloc[0]
            xs = np.array([done[axis].min(), done[axis].max()], float)
            ax.loglog(xs, f["prefactor"] * xs ** f["exponent"], "-", color=color, lw=1.2)
            label += f": d^{format_exponent(f.to_dict())}"
        ax.plot([], [], marker + "-", color=color, label=label)
    search = done[["search_length", axis]].dropna() if "search_length" in done else []
    if len(search):
        xs = np.array([search[axis].min(), search[axis].max()], float)
        centre = np.sqrt(xs[0] * xs[1])
        level = np.exp(np.log(search["search_length"]).mean())
        ax.loglog(xs, level * xs / centre, "k--", lw=0.9, label="slope 1 (paper: d polylog d)")
    ax.set_xlabel("input dimension d")
    ax.set_ylabel("steps")
    ax.set_xticks(sorted(done[axis].unique()), [f"{v:g}" for v in sorted(done[axis].unique())])
    ax.minorticks_off()
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, title="exponent [95% CI]", title_fontsize=7)
    ax.set_title("XOR: phase lengths vs d at a fixed batch size", fontsize=10)
    return save(fig, path)


def write_figures(view) -> list[Path]:
    written = []
    runs = _runs(view)
    if runs:
        written.append(phase_panels(runs, view.out / "find_then_tune.png"))
    table = view.table
    if DIMENSION in view.axes and "outcome" in table:
        fits = scaling_table(table)
        written.append(view.out / "search_scaling.csv")
        fits.to_csv(written[-1], index=False)
        if len(fits) and (table["outcome"] == "detected").sum() >= 2:
            written.append(scaling_figure(table, fits, view.out / "search_scaling.png"))
    return written
