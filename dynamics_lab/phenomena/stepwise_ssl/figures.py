"""Stepwise SSL figures: the embedding's eigenvalues stepping up one at a time with the theory's
sigmoids beside them and the loss falling one unit per step (Simon et al. 2023, Fig. 1A/B), and
observed vs predicted step times (the stepwise report's own)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dynamics_lab.phenomena.columns import verdict_key
from dynamics_lab.phenomena.figure_marks import band, label, title
from dynamics_lab.phenomena.plotting import colors, pyplot, save
from dynamics_lab.phenomena.stepwise.figures import (
    _cells,
    _title,
    _xlim,
    grid_figures,
    listed,
    selection,
)
from dynamics_lab.phenomena.stepwise_ssl.detector import EIG
from dynamics_lab.phenomena.stepwise_ssl.theory import initial_strength, ssl_curve, theory_for

STRENGTH = "modes/strength_"


def _theory_curves(config: dict, steps: np.ndarray) -> list[np.ndarray]:
    """Each learnable mode's predicted strength over `steps` (empty where theory is silent)."""
    times, _ = theory_for(config)
    if times is None:
        return []
    task, model = config["task"], config["model"]
    d, lr = int(task["embed_dim"]), float(config["optim"]["lr"])
    curves = []
    for j, gamma in enumerate(sorted(task["spectrum"], reverse=True)[:d]):
        q0 = initial_strength(gamma, j, d, int(task["dim"]), float(model["init_scale"]))
        curves.append(ssl_curve(steps, gamma, q0, lr) if times[j] is not None else None)
    return curves


def eigenvalue_figure(view, runs, cols, rows, col, row, path: Path) -> Path:
    n_rows, n_cols = len(rows), len(cols)
    fig, axes = pyplot().subplots(n_rows, n_cols, figsize=(3.3 * n_cols, 2.7 * n_rows),
                                  squeeze=False)
    palette = colors()
    for ax, rv, cv, (_, r, frame) in _cells(runs, axes, rows, cols):
        config, seeds = view.config(r["run_id"]), view.seeds(r) or [frame]
        right = _xlim(r, frame)
        steps = np.linspace(0, right, 400)
        theory = _theory_curves(config, steps)
        observed = listed(r, "step_times")
        eigs = sorted((c for c in frame if c.startswith(EIG)), key=lambda c: int(c[len(EIG):]))
        for k, column in enumerate(eigs):
            color = palette[k % len(palette)]
            band(ax, seeds, column, color, f"eigenvalue {k}", lw=1.4)
            if k < len(theory) and theory[k] is not None:
                ax.plot(steps, theory[k], color=color, ls="--", lw=0.9)
            if k < len(observed) and observed[k] is not None:
                ax.plot([observed[k]], [0.5], "o", color=color, ms=4)
        ax.axhline(1.0, color="k", ls=":", lw=0.8)
        ax.set_xlim(0, right)
        ax.set_ylim(-0.05, 1.15)
        ax.grid(alpha=0.3)
        label(ax, "step", fontsize=8)
        _title(ax, col, cv, row, rv, r)
    axes[0][0].set_ylabel("eigenvalue of the cross-correlation C")
    axes[0][0].legend(fontsize=7)
    title(fig, "embedding cross-correlation eigenvalues (solid); dashed: small-init theory of "
          "each mode; dots: observed half-way steps", selection(view, runs))
    return save(fig, path)


def loss_figure(view, runs, cols, rows, col, row, path: Path) -> Path:
    """The loss on a linear scale, as the paper plots it: one unit lost per learned mode."""
    fig, axes = pyplot().subplots(len(rows), len(cols), figsize=(3.3 * len(cols),
                                  2.7 * len(rows)), squeeze=False)
    for ax, rv, cv, (_, r, frame) in _cells(runs, axes, rows, cols):
        column = r.get(verdict_key("loss_metric"))
        column = column if column in frame else "train/loss"
        band(ax, view.seeds(r) or [frame], column, "k", lw=1.2)
        for lo, hi in listed(r, "plateaus"):
            ax.axvspan(lo, hi, color="tab:blue", alpha=0.12)
        theory = listed(r, "theory_times")
        for t in (t for t in theory if t is not None):
            ax.axvline(t, color="tab:red", lw=0.9, ls="--")
        ax.set_xlim(0, _xlim(r, frame))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        label(ax, "step", fontsize=8)
        _title(ax, col, cv, row, rv, r)
    axes[0][0].set_ylabel("Barlow Twins loss ||C - I||^2")
    title(fig, "Barlow Twins loss with the plateaus read off it (shaded); dashed: predicted "
          "step times", selection(view, runs))
    return save(fig, path)


def write_figures(view) -> list[Path]:
    return grid_figures(view, {"embedding_eigenvalues.png": eigenvalue_figure,
                               "loss_plateaus.png": loss_figure})
