"""Grokking figures: accuracy curves of representative runs, the delay over the swept keys, and
(when logged) Nanda et al.'s progress measures against the test loss."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dynamics_lab.phenomena.base import Outcome
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
PHASE_STEPS = (("fit_step", "train fit", "tab:blue"),
               ("restricted_step", "restricted (final keys) < chance/2", "tab:green"),
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
    if len(axes) >= 2 and "delay_ratio" in table:
        grokked = table.assign(delay=table["delay_ratio"].where(
            table["outcome"] == Outcome.DETECTED.value))
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


def progress_figure(view, progress, path: Path, limit: int = 3) -> Path:
    """Per run: losses with the restricted and excluded loss (log scale), the phase steps marked;
    below, val accuracy and the key frequencies' share of the embedding and of the logits."""
    plt = pyplot()
    rows = progress.head(limit)
    fig, axes = plt.subplots(2, len(rows), figsize=(8.5 * len(rows), 6.4), squeeze=False,
                             sharex="col", gridspec_kw={"height_ratios": [2, 1]})
    for col, (_, row) in enumerate(rows.iterrows()):
        frame = view.metrics(row["run_id"])
        top, bottom = axes[0][col], axes[1][col]
        for column, label, color, style in PROGRESS_LOSSES:
            if column in frame:
                data = frame[["step", column]].dropna()
                top.plot(data["step"], data[column].clip(lower=1e-8), style, color=color,
                         label=label)
        top.axhline(row["chance"], color="gray", lw=0.8, ls=":", label="chance (initial test loss)")
        for ax in (top, bottom):
            for key, label, color in PHASE_STEPS:
                if pd.notna(row.get(key)):
                    ax.axvline(row[key], color=color, lw=0.9, ls=":",
                               label=f"{label}: {row[key]:,.0f}" if ax is top else None)
        top.set_yscale("log")
        top.set_ylabel("cross-entropy")
        top.set_title(row["run_id"], fontsize=9)
        top.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        top.grid(alpha=0.3)
        for column, label, color in (("val/acc", "val acc", "tab:orange"),
                                     ("fourier/key_power", "key-frequency share of embedding",
                                      "tab:purple"),
                                     ("fourier/key_logit_share", "key-frequency share of logits",
                                      "tab:green")):
            if column in frame:
                data = frame[["step", column]].dropna()
                bottom.plot(data["step"], data[column], color=color, label=label)
        bottom.set_ylim(0, 1.02)
        bottom.set_xlabel("step")
        bottom.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        bottom.grid(alpha=0.3)
    fig.suptitle("progress measures (Nanda et al. 2023): the circuit forms before the test loss "
                 "falls", fontsize=10)
    return save(fig, path)
