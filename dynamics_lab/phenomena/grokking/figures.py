"""Grokking figures: accuracy curves of representative runs, the delay over the swept keys, and
(when logged) Nanda et al.'s progress measures against the test loss."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dynamics_lab.phenomena.base import Outcome
from dynamics_lab.phenomena.columns import verdict_key
from dynamics_lab.phenomena.figure_marks import band, label, mark_steps, seeds_text, title
from dynamics_lab.phenomena.grokking.progress import (
    EXCLUDED,
    FINAL_EXCLUDED,
    FINAL_RESTRICTED,
    RESTRICTED,
    progress_table,
)
from dynamics_lab.phenomena.plotting import curves, phase_diagram, pyplot, save

PROGRESS_LOSSES = (("train/loss", "train loss", "tab:blue", "-"),
                   ("val/loss", "test loss", "tab:orange", "-"),
                   (FINAL_RESTRICTED, "restricted loss (final model's key frequencies only)",
                    "tab:green", "-"),
                   (FINAL_EXCLUDED, "excluded loss (final model's key frequencies removed)",
                    "tab:red", "-"),
                   (RESTRICTED, "restricted loss, key frequencies of the moment", "tab:green",
                    ":"),
                   (EXCLUDED, "excluded loss, key frequencies of the moment", "tab:red", ":"))
# The train fit is the verdict's (marked in grey with its generalization step).
PHASE_STEPS = (("restricted_step", "restricted (final keys) < chance/2", "tab:green"),
               ("excluded_step", "excluded (final keys) > chance", "tab:red"),
               ("test_step", "test < chance/2", "tab:orange"))


def write_figures(view) -> list[Path]:
    written = []
    runs = view.representative()
    if runs:
        written.append(curves(
            runs, [("train/acc", "train"), ("val/acc", "val")], view.out / "accuracy_curves.png",
            title="grokking: train vs validation accuracy", ylabel="accuracy"))
    table, axes = view.table, view.axes
    if len(axes) >= 2 and verdict_key("delay_ratio") in table:
        grokked = table.assign(delay=table[verdict_key("delay_ratio")].where(
            table[verdict_key("outcome")] == Outcome.DETECTED.value))
        written.append(phase_diagram(
            grokked, axes[0], axes[1], "delay", view.out / "phase_diagram.png",
            title="grokking delay (generalization step / fit step); '-' = did not grok",
            annotate="{:.1f}x"))
    progress = progress_table(view)
    if len(progress):
        written.append(view.out / "progress.csv")
        progress.to_csv(written[-1], index=False)
        written.append(progress_figure(view, progress, view.out / "progress_measures.png"))
    return written


SHARES = (("val/acc", "val acc", "tab:orange"),
          ("fourier/key_power", "key-frequency share of embedding", "tab:purple"),
          ("fourier/key_logit_share", "key-frequency share of logits", "tab:green"))


def progress_figure(view, progress, path: Path, limit: int = 3) -> Path:
    """Per grid point (the first `limit` with the progress measures): losses with the restricted
    and excluded loss (log scale), below val accuracy and the key frequencies' share of the
    embedding and of the logits; each the mean over the grid point's seeds with its 95% band.
    The lowest seed's progress steps (dotted, coloured) and its verdict's fit and
    generalization steps (grey) marked."""
    plt = pyplot()
    ids = list(progress["run_id"].head(limit))
    runs = view.runs(view.table[view.table["run_id"].isin(ids)])
    steps = progress.set_index("run_id")
    fig, axes = plt.subplots(2, max(len(runs), 1), figsize=(8.5 * max(len(runs), 1), 6.4),
                             squeeze=False, sharex="col", gridspec_kw={"height_ratios": [2, 1]})
    counts = []
    for col, (name, row, frame) in enumerate(runs):
        top, bottom = axes[0][col], axes[1][col]
        seeds, phases = view.seeds(row) or [frame], steps.loc[row["run_id"]]
        for column, text, color, style in PROGRESS_LOSSES:
            counts.append(band(top, seeds, column, color, text, ls=style))
        top.axhline(phases["chance"], color="gray", lw=0.8, ls=":",
                    label="chance (initial test loss)")
        for ax in (top, bottom):
            for key, text, color in PHASE_STEPS:
                if pd.notna(phases.get(key)):
                    ax.axvline(phases[key], color=color, lw=0.9, ls=":",
                               label=f"{text}: {phases[key]:,.0f}" if ax is top else None)
            mark_steps(ax, row, legend=ax is top)
        top.set_yscale("log")
        top.set_ylabel("cross-entropy (nats)")
        top.set_title(name, fontsize=9)
        top.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        top.grid(alpha=0.3)
        for column, text, color in SHARES:
            band(bottom, seeds, column, color, text)
        bottom.set_ylim(0, 1.02)
        bottom.set_ylabel("accuracy / share")
        label(bottom, "step")
        bottom.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        bottom.grid(alpha=0.3)
    title(fig, "progress measures (Nanda et al. 2023): the circuit forms before the test loss "
          "falls", f"{view.selection(runs)}, {seeds_text(counts)}; dotted: the lowest seed's "
          "progress steps, grey: its verdict's fit and generalization steps")
    return save(fig, path)
