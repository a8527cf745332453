"""Find-then-tune figures: loss and signal alignment on a log step axis per input dimension (the
search and tuning phases shaded), and the samples to reach the target test error against d at
the step size tuned per d, with the fitted d, d log d and d log^2 d forms."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from dynamics_lab.phenomena.columns import verdict_key
from dynamics_lab.phenomena.figure_marks import band, label, seeds_text, title
from dynamics_lab.phenomena.plotting import pyplot, save
from dynamics_lab.phenomena.xor.scaling import (
    DIM,
    FORMS,
    LR,
    SAMPLES,
    distinguishes,
    form_fits,
    per_dimension,
    tuned_points,
    tuned_table,
)


def _picked(view, tuned: pd.DataFrame) -> pd.DataFrame:
    """The lowest seed's runs at each d's tuned step size."""
    table = view.first_seed()
    if len(tuned) and LR in table:
        table = table.merge(tuned[[DIM, "tuned_lr"]], on=DIM)
        table = table[np.isclose(table[LR].astype(float), table["tuned_lr"].astype(float))]
    return table


def _from_1(steps: np.ndarray) -> np.ndarray:
    return np.clip(steps, 1, None)  # step 0 on a log axis


def phase_panels(view, runs: list, path: Path) -> Path:
    """Per run: population loss (left, with log 2) and signal alignment (right) vs step, each
    the mean over the seeds at that point with a 95% band; the lowest seed's phases shaded."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(runs), figsize=(3.9 * len(runs), 3.5), squeeze=False)
    counts = []
    for ax, (name, row, frame) in zip(axes[0], runs):
        seeds = view.seeds(row) or [frame]
        counts.append(band(ax, seeds, "val/loss", "tab:blue", "population loss",
                           step=_from_1))
        ax.axhline(math.log(2), color="tab:blue", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_ylim(0, 0.8)
        twin = ax.twinx()
        for column, text, style in (("signal/alignment", "signal alignment", "-"),
                                    ("signal/random_level", "random level", ":")):
            band(twin, seeds, column, "tab:red", text, step=_from_1, ls=style)
        twin.set_ylim(0, 1.05)
        end, tune = row.get(verdict_key("search_end")), row.get(verdict_key("tune_end"))
        if pd.notna(end):
            ax.axvspan(1, end, color="tab:gray", alpha=0.12, label=f"search: to step {end:,.0f}")
            if pd.notna(tune):
                ax.axvspan(end, tune, color="tab:orange", alpha=0.12,
                           label=f"tuning: to step {tune:,.0f}")
        ax.set_title(f"{name}\n{_verdict_line(row)}", fontsize=8)
        label(ax, "step")
        ax.grid(alpha=0.3)
        if ax is axes[0][0]:
            ax.set_ylabel("logistic loss (dotted: log 2)")
            lines = [*ax.get_lines(), *twin.get_lines()]
            ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="lower left")
        if ax is axes[0][-1]:
            twin.set_ylabel("max |cos(w_j, e_i +- e_j)|, output-weighted")
    title(fig, "XOR: SGD finds the signal directions at log 2 (grey), then tunes (orange)",
          f"{view.selection(runs)} at each d's tuned step size, {seeds_text(counts)}; phases of "
          "the lowest seed")
    return save(fig, path)


def _verdict_line(row: pd.Series) -> str:
    outcome = row.get(verdict_key("outcome"))
    if outcome != "detected":
        return str(outcome if outcome is not None else "")
    return (f"search {row[verdict_key('search_length')]:,.0f}, "
            f"tuning {row[verdict_key('tuning_length')]:,.0f} steps")


def samples_figure(view, points: pd.DataFrame, fits: pd.DataFrame, tuned: pd.DataFrame,
                   table: pd.DataFrame, path: Path) -> Path:
    """Left: samples to the target error against d at the tuned step size (each seed a point,
    the mean with its 95% interval), with the fitted forms. Right: samples against the step
    size for each d (the tuning)."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.loglog(points[DIM], points[SAMPLES], "o", color="tab:blue", alpha=0.35, ms=4)
    means = per_dimension(points)
    err = np.vstack([means["samples_mean"] - means["samples_ci_low"],
                     means["samples_ci_high"] - means["samples_mean"]])
    left.errorbar(means[DIM], means["samples_mean"], yerr=np.nan_to_num(err), fmt="o",
                  color="tab:blue", capsize=3, label="mean over seeds, 95% interval")
    xs = np.geomspace(points[DIM].min(), points[DIM].max(), 50)
    styles = {"d^b": "k-", "d": "--", "d log d": "-.", "d log^2 d": ":"}
    for _, fit in fits.iterrows():
        name = fit["form"]
        if name == "d^b":
            text = (f"fit d^b: b = {fit['exponent']:.2f} [{fit['ci_low']:.2f}, "
                    f"{fit['ci_high']:.2f}]")
            ys = fit["constant"] * xs ** fit["exponent"]
        else:
            text = f"fit C {name} (delta AIC {fit['delta_aic']:.1f})"
            ys = fit["constant"] * FORMS[name](xs)
        left.loglog(xs, ys, styles[name], lw=1, label=text)
    left.set_xlabel("input dimension d")
    left.set_ylabel("samples (steps x batch) to the target test error")
    ticks = sorted(points[DIM].unique())
    left.set_xticks(ticks, [f"{v:g}" for v in ticks])
    left.minorticks_off()
    left.grid(alpha=0.3, which="both")
    left.legend(fontsize=6)
    left.set_title(distinguishes(fits), fontsize=7)
    if LR in table:
        for d, part in table.groupby(DIM):
            values = pd.to_numeric(part[SAMPLES], errors="coerce").groupby(part[LR]).mean()
            right.loglog(values.index, values.to_numpy(), "o-", ms=3, label=f"d={d:g}")
        label(right, LR)
        right.set_ylabel("samples, mean over seeds")
        right.grid(alpha=0.3, which="both")
        right.legend(fontsize=6, ncol=2)
        right.set_title("tuning: the fewest samples per d picks its step size", fontsize=8)
    title(fig, "XOR: samples to learn against d at a step size tuned per d",
          f"{view.every_run()}: left at each d's tuned step size, each seed a point")
    return save(fig, path)


def write_figures(view) -> list[Path]:
    written = []
    table = view.table
    tuned = tuned_table(table) if DIM in view.axes else pd.DataFrame()
    runs = view.runs(_picked(view, tuned), by=DIM, limit=6)
    if runs:
        written.append(phase_panels(view, runs, view.out / "find_then_tune.png"))
    if not len(tuned):
        return written
    written.append(view.out / "tuned_lr.csv")
    tuned.to_csv(written[-1], index=False)
    points = tuned_points(table, tuned)
    fits = form_fits(points)
    if len(fits):
        means = per_dimension(points)
        out = fits.assign(distinguishes=distinguishes(fits),
                          dims=" ".join(f"{v:g}" for v in means[DIM]),
                          seeds_per_dim=int(means["seeds"].min()))
        written.append(view.out / "samples_scaling.csv")
        out.to_csv(written[-1], index=False)
        written.append(view.out / "samples_per_dim.csv")
        means.to_csv(written[-1], index=False)
        written.append(samples_figure(view, points, fits, tuned, table,
                                      view.out / "samples_scaling.png"))
    return written
