"""Lazy vs rich figures: losses (with the lazy baseline, kernel regression with the initial NTK),
NTK alignment and kernel distance on one time axis per alpha, the regime of every run against
the swept key, and Kumar et al.'s grokking delay (train and test loss reaching a shared level)
against it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dynamics_lab.phenomena.columns import verdict_key
from dynamics_lab.phenomena.figure_marks import band, label, mark_steps, seeds_text, title
from dynamics_lab.phenomena.plotting import pyplot, save

LOSSES = (("train/loss", "train loss", "tab:blue"), ("val/loss", "test loss", "tab:orange"))
LAZY = "kernel/lazy_test_loss"
KERNEL = (("ntk/alignment", "NTK-label alignment", "tab:green"),
          ("ntk/distance_init", "kernel distance from init", "tab:red"))


def _bands(ax, seeds: list[pd.DataFrame], columns) -> tuple[list, list[int]]:
    """Each column's mean over the grid point's seeds with its 95% band, steps clipped at 1 for
    the log axis; (lines for the legend, seeds drawn per column)."""
    lines, counts = [], []
    for column, text, color in columns:
        counts.append(band(ax, seeds, column, color, text, step=lambda s: np.clip(s, 1, None)))
        lines += [ax.get_lines()[-1]] if counts[-1] else []
    return lines, counts


def kernel_and_loss_panels(view, runs: list, path: Path) -> Path:
    """Per grid point (lowest-seed verdict): losses (log scale, left) and alignment / kernel
    distance (right) against step, each the mean over the seeds with its 95% band; the lowest
    seed's key steps (fit, test drop, alignment rise, ...) marked."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.4), squeeze=False)
    counts = []
    for ax, (name, row, frame) in zip(axes[0], runs):
        seeds = view.seeds(row) or [frame]
        lines, drawn = _bands(ax, seeds, LOSSES)
        counts += drawn
        if LAZY in frame and frame[LAZY].notna().any():
            lines.append(ax.axhline(float(frame[LAZY].dropna().iloc[0]), color="tab:orange",
                                    ls=":", lw=1, label="test loss, kernel regression with K0"))
        mark_steps(ax, row, legend=False)
        ax.set_yscale("log")
        ax.set_xscale("log")
        label(ax, "step")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        twin = ax.twinx()
        kernel, drawn = _bands(twin, seeds, KERNEL)
        lines += kernel
        counts += drawn
        twin.set_ylim(bottom=0)  # autoscaled: a near-linear network's kernel moves little
        if ax is axes[0][0]:
            ax.set_ylabel("loss")
            ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="lower left")
        if ax is axes[0][-1]:
            twin.set_ylabel("alignment / distance")
    title(fig, "lazy vs rich: the kernel moves and aligns when the test loss falls",
          f"{view.selection(runs)}, {seeds_text(counts)}; vertical lines: the lowest seed's key "
          "steps (fit, test drop, alignment rise, loss crossings)")
    return save(fig, path)


def _by_axis(table: pd.DataFrame, axis: str, column: str) -> pd.DataFrame:
    """Per swept value: mean, min and max of a column over the seeds."""
    values = pd.to_numeric(table[column], errors="coerce")
    return values.groupby(table[axis]).agg(["mean", "min", "max"]).dropna()


def _spread(ax, table, axis, field, label, color, marker="o"):
    """A verdict field against the swept key: every seed a faint point, the mean a line."""
    column = verdict_key(field)
    if column not in table:
        return
    values = pd.to_numeric(table[column], errors="coerce")
    ax.plot(table[axis], values, marker, color=color, alpha=0.35, ls="none", ms=4)
    stats = _by_axis(table, axis, column)
    ax.plot(stats.index, stats["mean"], marker + "-", color=color, label=label)


def regime_summary(view, table: pd.DataFrame, axis: str, path: Path) -> Path:
    """Final test loss (and the lazy baseline), kernel distance and peak alignment against the
    swept key; each seed a point, the mean a line; the verdicts (k/n grokked) annotated."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    _spread(ax, table, axis, "final_val_loss", "final test loss", "tab:orange")
    _spread(ax, table, axis, "lazy_test_loss", "kernel regression with K0 (test)", "tab:orange",
            "x")
    ax.set_xscale("log")
    ax.set_yscale("log")
    label(ax, axis, "val/loss")
    twin = ax.twinx()
    _spread(twin, table, axis, "kernel_distance", "kernel distance", "tab:red", "s")
    _spread(twin, table, axis, "alignment_max", "peak alignment", "tab:green", "^")
    twin.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=6)
    if verdict_key("outcome") in table:
        for value, part in table.groupby(axis):
            k = int((part[verdict_key("outcome")] == "detected").sum())
            y = pd.to_numeric(part[verdict_key("final_val_loss")], errors="coerce").max()
            if pd.notna(y):
                ax.annotate(f"{k}/{len(part)} grokked", (value, y), fontsize=6,
                            textcoords="offset points", xytext=(2, 4))
    title(fig, "output scale: final test loss, kernel movement",
          f"{view.every_run(table)}: each seed a point, the line its mean")
    return save(fig, path)


def delay_figure(view, table: pd.DataFrame, axis: str, path: Path,
                 min_ratio: float = 2.0) -> Path:
    """Left: steps at which the train and the test loss reach the shared level (Kumar et al.'s
    step gap). Right: the test drop step over the train fit step (the grokking delay in the raw
    losses), with the detector's threshold. Each seed a point, the mean a line."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    _spread(left, table, axis, "train_cross_step", "train loss at the shared level", "tab:blue")
    _spread(left, table, axis, "test_cross_step", "test loss at the shared level", "tab:orange")
    left.set_xscale("log")
    left.set_yscale("log")
    label(left, axis, "step")
    left.legend(fontsize=7)
    left.grid(alpha=0.3, which="both")
    _spread(right, table, axis, "delay_ratio", "test drop / train fit", "k")
    right.axhline(min_ratio, color="gray", ls=":", lw=1,
                  label=f"grokked above {min_ratio:g}x (detector default)")
    right.set_xscale("log")
    right.set_yscale("log")
    label(right, axis)
    right.set_ylabel("test drop step / train fit step")
    right.legend(fontsize=7)
    right.grid(alpha=0.3, which="both")
    for ax in (left, right):
        values = sorted(table[axis].dropna().unique())
        ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.minorticks_off()
    title(fig, "grokking delay (Kumar et al.): step gap at the shared level, and the test drop "
          "against the train fit", f"{view.every_run(table)}: each seed a point, the line its mean")
    return save(fig, path)


def write_figures(view, min_ratio: float = 2.0) -> list[Path]:
    written = []
    runs = view.runs(view.centre(view.axes[:1]), by=view.axes[0] if view.axes else None,
                     limit=5)
    if runs:
        written.append(kernel_and_loss_panels(view, runs, view.out / "kernel_and_loss.png"))
    if view.axes and verdict_key("final_val_loss") in view.table:
        written.append(regime_summary(view, view.table, view.axes[0],
                                      view.out / "regime_summary.png"))
    table = view.table
    delay = verdict_key("delay_ratio")
    if view.axes and delay in table and np.isfinite(
            pd.to_numeric(table[delay], errors="coerce")).sum() >= 2:
        written.append(delay_figure(view, table, view.axes[0], view.out / "grokking_delay.png",
                                    min_ratio))
    return written
