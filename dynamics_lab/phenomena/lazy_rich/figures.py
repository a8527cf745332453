"""Lazy vs rich figures: losses, NTK alignment and kernel distance on one time axis per alpha,
the regime of every run against the swept key, and Kumar et al.'s grokking delay (train and
test loss reaching a shared level) against it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dynamics_lab.phenomena.plotting import pyplot, save

LOSSES = (("train/loss", "train loss", "tab:blue"), ("val/loss", "test loss", "tab:orange"))
KERNEL = (("ntk/alignment", "NTK-label alignment", "tab:green"),
          ("ntk/distance_init", "kernel distance from init", "tab:red"))


def _plot(ax, frame: pd.DataFrame, columns) -> list:
    lines = []
    for column, label, color in columns:
        if column in frame:
            data = frame[["step", column]].dropna()
            lines += ax.plot(data["step"].clip(lower=1), data[column], label=label, color=color)
    return lines


def kernel_and_loss_panels(runs: dict[str, pd.DataFrame], path: Path) -> Path:
    """Per run: losses (log scale, left) and alignment / kernel distance (right) against step."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.4), squeeze=False)
    for ax, (name, frame) in zip(axes[0], runs.items()):
        lines = _plot(ax, frame, LOSSES)
        ax.set_yscale("log")
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        twin = ax.twinx()
        lines += _plot(twin, frame, KERNEL)
        twin.set_ylim(bottom=0)  # autoscaled: a near-linear network's kernel moves little
        if ax is axes[0][0]:
            ax.set_ylabel("loss")
            ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="lower left")
        if ax is axes[0][-1]:
            twin.set_ylabel("alignment / distance")
    fig.suptitle("lazy vs rich: the kernel moves and aligns when the test loss falls")
    return save(fig, path)


def regime_summary(table: pd.DataFrame, axis: str, path: Path) -> Path:
    """Final test loss, kernel distance and peak alignment against the swept key."""
    plt = pyplot()
    done = table.sort_values(axis)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(done[axis], done["final_val_loss"], "o-", color="tab:orange", label="final test loss")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(axis)
    ax.set_ylabel("final test loss")
    twin = ax.twinx()
    for column, label, color in (("kernel_distance", "kernel distance", "tab:red"),
                                 ("alignment_max", "peak alignment", "tab:green")):
        if column in done:
            twin.plot(done[axis], done[column], "s--", color=color, label=label)
    twin.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=7)
    for _, row in done.iterrows():
        ax.annotate(str(row.get("regime", "")), (row[axis], row["final_val_loss"]), fontsize=7,
                    textcoords="offset points", xytext=(3, 4))
    ax.set_title("regime by output scale", fontsize=10)
    return save(fig, path)


def delay_figure(table: pd.DataFrame, axis: str, path: Path) -> Path:
    """Steps at which the train and the test loss reach the shared level (left, log-log), and the
    delay between them in decades (right), against the swept key."""
    plt = pyplot()
    done = table.sort_values(axis)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    for column, label, color in (("train_cross_step", "train loss at the level", "tab:blue"),
                                 ("test_cross_step", "test loss at the level", "tab:orange")):
        left.loglog(done[axis], done[column], "o-", color=color, label=label)
    left.set_xlabel(axis)
    left.set_ylabel("step")
    left.legend(fontsize=7)
    left.grid(alpha=0.3, which="both")
    right.semilogx(done[axis], done["log_delay"], "o-", color="k")
    for _, row in done.iterrows():
        if pd.notna(row["log_delay"]):
            right.annotate(f"{10 ** row['log_delay']:.1f}x", (row[axis], row["log_delay"]),
                           textcoords="offset points", xytext=(4, -10), fontsize=7)
    right.set_xlabel(axis)
    right.set_ylabel("log10(test step / train step)")
    right.set_ylim(bottom=0)
    right.grid(alpha=0.3, which="both")
    for ax in (left, right):
        values = sorted(done[axis].dropna().unique())
        ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.minorticks_off()
    fig.suptitle("grokking delay (Kumar et al.): the test loss reaches the train loss's level "
                 "later, the lazier the network", fontsize=10)
    return save(fig, path)


def write_figures(view) -> list[Path]:
    written = []
    runs = view.representative()
    if runs:
        written.append(kernel_and_loss_panels(runs, view.out / "kernel_and_loss.png"))
    if view.axes and "final_val_loss" in view.table:
        written.append(regime_summary(view.table, view.axes[0], view.out / "regime_summary.png"))
    table = view.table
    if view.axes and "log_delay" in table and np.isfinite(
            pd.to_numeric(table["log_delay"], errors="coerce")).sum() >= 2:
        written.append(delay_figure(table, view.axes[0], view.out / "grokking_delay.png"))
    return written
