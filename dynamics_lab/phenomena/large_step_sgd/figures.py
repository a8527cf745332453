"""Large-step sparsity figures: loss and ReLU activity over training at each step size (the
stabilized loss, the sparsification while it lasts, the drop at the decay), and the sweep's
comparison of step sizes (sparsity and test loss against lr), with its table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dynamics_lab.phenomena.columns import verdict_key
from dynamics_lab.phenomena.figure_marks import band, label, mark_steps, seeds_text, title
from dynamics_lab.phenomena.large_step_sgd.compare import LR, compare_learning_rates
from dynamics_lab.phenomena.large_step_sgd.detector import ACTIVE, DEAD, TRAIN, VAL
from dynamics_lab.phenomena.plotting import colors, pyplot, save

DISTINCT = "sparsity/distinct_active_fraction"


def curves_figure(view, runs, path: Path) -> Path:
    """Per step size: loss (top) and ReLU activity (bottom), each the mean over the seeds with
    a 95% band; the lowest seed's decay step marked."""
    fig, axes = pyplot().subplots(2, len(runs), figsize=(3.4 * len(runs), 5.2), squeeze=False,
                                  sharex="col")
    counts = []
    for j, (_, row, frame) in enumerate(runs):
        top, bottom = axes[0][j], axes[1][j]
        seeds = view.seeds(row) or [frame]
        for column, style, text in ((TRAIN, "-", "train"), (VAL, "--", "test")):
            counts.append(band(top, seeds, column, "k", text, ls=style, lw=1.1))
        for column, style, text in ((ACTIVE, "-", "active per input"),
                                    (DISTINCT, "--", "distinct active"),
                                    (DEAD, ":", "never active")):
            band(bottom, seeds, column, "tab:blue" if column != DEAD else "tab:red", text,
                 ls=style, lw=1.2)
        for ax in (top, bottom):
            mark_steps(ax, row, legend=ax is top)
            ax.grid(alpha=0.3)
        top.set_yscale("log")
        verdict = {"detected": "sparse features", "undetermined": "undetermined"}.get(
            row.get(verdict_key("outcome")),
            "no stabilization" if row.get(verdict_key("stabilized")) is False
            else "not sparser")
        top.set_title(f"lr={row.get(LR, float('nan')):g}: {verdict}", fontsize=9)
        bottom.set_ylim(0, 1)
        label(bottom, "step", fontsize=8)
    axes[0][0].set_ylabel("loss")
    axes[1][0].set_ylabel("fraction of ReLUs")
    axes[0][0].legend(fontsize=7)
    axes[1][0].legend(fontsize=7)
    title(fig, "loss (top) and ReLU activity (bottom); dashed: the step-size decay",
          f"{view.selection(runs)}, {seeds_text(counts)}")
    return save(fig, path)


def comparison_figure(view, runs: pd.DataFrame, comparison, path: Path) -> Path:
    fig, axes = pyplot().subplots(1, 2, figsize=(9, 3.6))
    palette = colors()
    table = comparison.table
    panels = ((axes[0], (("active_before_decay", "active per input"),
                         ("dead_before_decay", "never active")), "fraction before the decay"),
              (axes[1], (("final_val_loss", "final test loss"),), "test loss after the decay"))
    for ax, columns, ylabel in panels:
        for k, (column, text) in enumerate(columns):
            if verdict_key(column) not in runs:
                continue
            color = palette[k % len(palette)]
            points = runs[[LR, verdict_key(column)]].apply(pd.to_numeric, errors="coerce")
            points = points.dropna()
            ax.plot(points[LR], points[verdict_key(column)], "o", color=color, ms=4, alpha=0.6)
            if column in table:
                ax.plot(table[LR], table[column], "-", color=color, lw=1.4, label=text)
        ax.set_xscale("log")
        ax.set_xticks(table[LR], [f"{v:g}" for v in table[LR]])
        ax.minorticks_off()
        ax.set_xlabel("learning rate (large phase)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[1].set_yscale("log")
    title(fig, f"step sizes against the smallest: {comparison.outcome}\n{comparison.reason}",
          f"{view.every_run()}: each seed a point, the line its mean", fontsize=9)
    return save(fig, path)


def write_figures(view) -> list[Path]:
    runs = view.runs(by=LR)
    if not runs:
        return []
    written = [curves_figure(view, runs, view.out / "loss_and_sparsity.png")]
    comparison = compare_learning_rates(view.table)
    if not comparison.table.empty:
        table = comparison.table.assign(comparison=comparison.line)
        table.to_csv(view.out / "lr_comparison.csv", index=False)
        written += [view.out / "lr_comparison.csv",
                    comparison_figure(view, view.table, comparison,
                                      view.out / "lr_comparison.png")]
    return written
