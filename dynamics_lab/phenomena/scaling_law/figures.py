"""Associative-memory figures: error vs d and vs T on log-log axes with power-law fits and theory,
the error over the whole (d, T) grid, and recall by token frequency rank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dynamics_lab.phenomena.base import Outcome
from dynamics_lab.phenomena.columns import verdict_key
from dynamics_lab.phenomena.figure_marks import band, label, per_seed, seeds_text, title
from dynamics_lab.phenomena.plotting import pyplot, save
from dynamics_lab.phenomena.scaling_law.fits import AXES, ESTIMATORS, error_column, scaling_fits

COLORS = dict(zip(ESTIMATORS, ("k", "tab:blue", "tab:orange", "tab:green")))
MARKERS = dict(zip(ESTIMATORS, ("o", "s", "^", "v")))


def _window(values) -> tuple | None:
    return tuple(values) if values else None


def _fit_label(f: pd.Series) -> str:
    label = f": {f['exponent']:.2f} [{f['ci_low']:.2f}, {f['ci_high']:.2f}]"
    judged = f.get("power_law", Outcome.DETECTED.value)
    if judged == Outcome.NOT_DETECTED.value:
        label += " (not a power law)"
    elif judged == Outcome.UNDETERMINED.value:
        label += f" ({f['n']} sizes: power law unconfirmed)"
    if pd.notna(f["theory"]):
        label += f", theory {f['theory']:.2f}"
    return label


def _positive_band(ax, table: pd.DataFrame, axis: str, column: str, color, text=None,
                   **line) -> int:
    """`column` against `axis` as the mean over seeds with its 95% band, zero errors left out
    (log axes); the number of seeds."""
    frames = [f.assign(**{column: f[column].where(f[column] > 0)})
              for f in per_seed(table[[axis, "seed", column]] if "seed" in table
                                else table[[axis, column]], axis)]
    return band(ax, frames, column, color, text, **line)


def scaling_figure(view, table: pd.DataFrame, fits: pd.DataFrame, windows: dict,
                   path: Path) -> Path:
    """Two panels: error vs d at the largest T, error vs T at the largest d; points are means
    over the seeds, shaded their 95% band."""
    from matplotlib.ticker import FixedLocator, NullLocator

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    counts = []
    for ax, (axis, other) in zip(axes, (("d", "T"), ("T", "d"))):
        x = AXES[axis]
        fixed = table[AXES[other]].max()
        line = table[table[AXES[other]] == fixed]
        window = windows.get(axis)
        for estimator in ESTIMATORS:
            column = error_column(estimator)
            if column not in line or line[column].isna().all():
                continue
            ax.set_xscale("log")
            ax.set_yscale("log")
            counts.append(_positive_band(ax, line, x, column, COLORS[estimator], lw=0))
            points = line[[x, column]].dropna().groupby(x)[column].mean()
            points = points[points > 0]
            inside = (np.ones(len(points), bool) if window is None else
                      (points.index >= window[0]) & (points.index <= window[1]))
            color, marker = COLORS[estimator], MARKERS[estimator]
            ax.loglog(points.index[inside], points[inside], marker, color=color, ms=5)
            ax.loglog(points.index[~inside], points[~inside], marker, color=color, ms=5,
                      mfc="none", alpha=0.6)
            fit = (fits[(fits["estimator"] == estimator) & (fits["axis"] == axis)]
                   if len(fits) else [])
            legend = estimator
            if not len(fit):
                # Drawn, not fitted: no power law is expected along this axis at these sizes.
                ax.loglog(points.index, points, ":", color=color, lw=0.9)
                legend += ": not fitted (other bottleneck)"
            else:
                f = fit.iloc[0]
                xs = np.array([points.index[inside].min(), points.index[inside].max()], float)
                ax.loglog(xs, f["prefactor"] * xs ** -f["exponent"], "-", color=color, lw=1.2)
                legend += _fit_label(f)
                if pd.notna(f["theory"]):
                    # The theory slope, drawn through the fitted line's geometric centre.
                    centre = np.sqrt(xs[0] * xs[1])
                    level = f["prefactor"] * centre ** -f["exponent"]
                    ax.loglog(xs, level * (xs / centre) ** -f["theory"], "--", color=color,
                              lw=0.9, alpha=0.8)
            ax.plot([], [], marker + "-", color=color, label=legend)
        label(ax, x)
        ax.set_ylabel("population error (fraction)")
        ax.xaxis.set_major_locator(FixedLocator(sorted(table[x].unique())))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, title="exponent [95% CI]", title_fontsize=7)
        limit = "memory-limited" if axis == "d" else "data-limited"
        ax.set_title(f"error vs {axis} at {other}={fixed:g} ({limit}); hollow: outside the fit",
                     fontsize=9)
    d, T = table[AXES["d"]], table[AXES["T"]]
    shown = table[(T == T.max()) | (d == d.max())]
    title(fig, "associative-memory scaling laws: solid = fit, dashed = theory slope",
          f"{view.selection(shown)} (the largest T and the largest d), {seeds_text(counts)}")
    return save(fig, path)


def grid_figure(view, table: pd.DataFrame, path: Path) -> Path:
    """Error vs d for every T, trained memory and top_k: where each bottleneck takes over; each
    line the mean over seeds with its 95% band."""
    plt = pyplot()
    estimators = [e for e in ("trained", "top_k") if error_column(e) in table]
    fig, axes = plt.subplots(1, len(estimators), figsize=(5.2 * len(estimators), 4),
                             squeeze=False)
    cmap = plt.get_cmap("viridis")
    Ts = sorted(table[AXES["T"]].dropna().unique())
    counts = []
    for ax, estimator in zip(axes[0], estimators):
        ax.set_xscale("log")
        ax.set_yscale("log")
        for i, T in enumerate(Ts):
            counts.append(_positive_band(ax, table[table[AXES["T"]] == T], AXES["d"],
                                         error_column(estimator),
                                         cmap(i / max(len(Ts) - 1, 1)), f"T={T:g}", marker="o",
                                         ms=4))
        label(ax, AXES["d"])
        ax.set_ylabel("population error (fraction)")
        ax.set_title(f"{estimator}: error vs d, one line per T", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    title(fig, "", f"{view.selection(table)}, {seeds_text(counts)}")
    return save(fig, path)


def _final_recall(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """The run's last logged recall per token-rank bucket, `step` the bucket's centre rank."""
    columns = [c for c in frame if c.startswith("memory/recall_")] if frame is not None else []
    if not columns:
        return None
    last = frame[columns].ffill().iloc[-1]
    ranges = sorted((tuple(int(v) for v in c.rsplit("_", 1)[1].split("-")), c) for c in columns)
    return pd.DataFrame({"step": [np.sqrt(lo * hi) for (lo, hi), _ in ranges],
                         "recall": [last[c] for _, c in ranges]})


def recall_figure(view, table: pd.DataFrame, path: Path) -> Path | None:
    """Final recall of the trained memory by token-rank bucket, one line per d at the largest T:
    the mean over seeds with its 95% band."""
    plt = pyplot()
    line = table[table[AXES["T"]] == table[AXES["T"]].max()]
    fig, ax = plt.subplots(figsize=(5.4, 4))
    ax.set_xscale("log")
    cmap = plt.get_cmap("plasma")
    ds = sorted(line[AXES["d"]].unique())
    counts = []
    for i, d in enumerate(ds):
        recalls = [_final_recall(view.metrics(r)) for r in line[line[AXES["d"]] == d]["run_id"]]
        counts.append(band(ax, [r for r in recalls if r is not None], "recall",
                           cmap(i / max(len(ds), 1)), f"d={d:g}", marker="o"))
    if not any(counts):
        plt.close(fig)
        return None
    ax.set_xlabel("token frequency rank (bucket centre)")
    ax.set_ylabel("fraction recalled")
    ax.set_title(f"trained memory: recall by frequency rank, T={line[AXES['T']].max():g}",
                 fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    title(fig, "", f"{view.selection(line)}, {seeds_text(counts)}")
    return save(fig, path)


def write_figures(view) -> list[Path]:
    table = view.table
    if table.empty or AXES["d"] not in table or AXES["T"] not in table:
        return []
    section = view.config(table["run_id"].iloc[0]).get("phenomenon") or {}
    windows = {"d": _window(section.get("fit_d")), "T": _window(section.get("fit_T"))}
    alpha = float(table[verdict_key("alpha")].dropna().iloc[0])
    fits = scaling_fits(table, alpha, windows["d"], windows["T"])
    written = [view.out / "scaling_fits.csv"]
    fits.to_csv(written[0], index=False)
    written.append(scaling_figure(view, table, fits, windows, view.out / "scaling_laws.png"))
    if table[AXES["d"]].nunique() > 1 and table[AXES["T"]].nunique() > 1:
        written.append(grid_figure(view, table, view.out / "error_grid.png"))
    recall = recall_figure(view, table, view.out / "recall_by_rank.png")
    return written + ([recall] if recall else [])
