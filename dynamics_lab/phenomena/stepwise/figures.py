"""Stepwise figures: mode strengths with predicted step times, loss plateaus, observed vs theory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from dynamics_lab.phenomena.base import Outcome
from dynamics_lab.phenomena.columns import verdict_key
from dynamics_lab.phenomena.figure_marks import band, label, title
from dynamics_lab.phenomena.plotting import colors, pyplot, save


def _grid(table: pd.DataFrame, axes: list[str]) -> tuple[str | None, str | None]:
    """(column axis, row axis): init scale across, the other swept key down, when present."""
    col = "model.init_scale" if "model.init_scale" in axes else (axes[0] if axes else None)
    rows = [a for a in axes if a != col]
    return col, rows[0] if rows else None


def _values(table: pd.DataFrame, axis: str | None) -> list:
    return sorted(table[axis].dropna().unique()) if axis else [None]


def listed(r: pd.Series, field: str) -> list:
    """A list-valued verdict field of a run's table row ([] when missing or not a list)."""
    value = r.get(verdict_key(field))
    return value if isinstance(value, list) else []


def _finite(values) -> list[float]:
    return [float(v) for v in (values if isinstance(values, list) else [])
            if v is not None and np.isfinite(v)]


def grid_runs(view, col: str | None, row: str | None) -> dict:
    """(row value, col value) -> (label, verdict row, metrics) of the lowest seed there."""
    found = {}
    for entry in view.runs():
        r = entry[1]
        found.setdefault((r[row] if row else None, r[col] if col else None), entry)
    return found


def selection(view, runs: dict) -> str:
    """What a grid of panels shows: its grid points, the lowest seed's verdict in the titles."""
    seeds = max((len(view.point(r)) for _, r, _ in runs.values()), default=1)
    return (f"{view.selection(list(runs.values()))}, one panel each; curves: mean and 95% band "
            f"over {seeds} seeds; marks and titles: the lowest seed's verdict" if seeds > 1 else
            f"{view.selection(list(runs.values()))}, one panel each, one seed")


def _xlim(r: pd.Series, frame: pd.DataFrame) -> float:
    late = _finite(listed(r, "rise_ends")) + _finite(listed(r, "theory_times"))
    last = float(frame["step"].max())
    return min(last, 1.4 * max(late)) if late else last


def _panels(n_rows: int, n_cols: int):
    fig, axes = pyplot().subplots(n_rows, n_cols, figsize=(3.3 * n_cols, 2.7 * n_rows),
                                  squeeze=False)
    return fig, axes


def _title(ax, col, cv, row, rv, r) -> None:
    parts = [f"{a.rsplit('.', 1)[-1]}={v:g}" for a, v in ((col, cv), (row, rv)) if a]
    verdict = {Outcome.DETECTED.value: "stepwise", Outcome.UNDETERMINED.value: "undetermined"
               }.get(r.get(verdict_key("outcome")), "not stepwise")
    ax.set_title(f"{', '.join(parts)}: {verdict}", fontsize=8)


def _cells(runs, axes, rows, cols):
    """(ax, row value, col value, run entry) for each grid cell with a run; empty cells hidden."""
    for (i, rv), (j, cv) in ((a, b) for a in enumerate(rows) for b in enumerate(cols)):
        if (rv, cv) in runs:
            yield axes[i][j], rv, cv, runs[(rv, cv)]
        else:
            axes[i][j].axis("off")


def mode_figure(view, runs, cols, rows, col, row, path: Path) -> Path:
    fig, axes = _panels(len(rows), len(cols))
    palette = colors()
    for ax, rv, cv, (_, r, frame) in _cells(runs, axes, rows, cols):
        targets = (view.config(r["run_id"]).get("task") or {}).get("singular_values") or []
        seeds = view.seeds(r) or [frame]
        theory, observed = listed(r, "theory_times"), listed(r, "step_times")
        for k, s in enumerate(targets):
            column, color = f"modes/strength_{k}", palette[k % len(palette)]
            if column not in frame:
                continue
            band(ax, seeds, column, color, f"mode {k} (s={s:g})", scale=1 / s, lw=1.4)
            if k < len(theory) and theory[k] is not None:
                ax.axvline(theory[k], color=color, ls="--", lw=0.9)
            if k < len(observed) and observed[k] is not None:
                ax.plot([observed[k]], [0.5], "o", color=color, ms=4)
        ax.axhline(1.0, color="k", ls=":", lw=0.8)
        ax.set_xlim(0, _xlim(r, frame))
        ax.grid(alpha=0.3)
        label(ax, "step", fontsize=8)
        _title(ax, col, cv, row, rv, r)
    axes[0][0].set_ylabel("mode strength / target singular value")
    axes[0][0].legend(fontsize=7)
    title(fig, "mode strengths relative to their targets; dots: observed half-way steps, "
          "dashed: small-init theory", selection(view, runs))
    return save(fig, path)


def loss_figure(view, runs, cols, rows, col, row, path: Path) -> Path:
    fig, axes = _panels(len(rows), len(cols))
    for ax, rv, cv, (_, r, frame) in _cells(runs, axes, rows, cols):
        column = r.get(verdict_key("loss_metric"))
        column = column if isinstance(column, str) else None
        column = column if column in frame else next(
            (c for c in ("train/batch_loss", "train/loss") if c in frame), None)
        if column is None:
            ax.axis("off")
            continue
        data = frame[["step", column]].dropna()
        right = _xlim(r, frame)
        band(ax, view.seeds(r) or [frame], column, "k", lw=1.2)
        shown = data[column][(data["step"] <= right) & (data[column] > 0)]
        if len(shown):
            ax.set_ylim(shown.min() / 2, shown.max() * 2)
        for lo, hi in listed(r, "plateaus"):
            ax.axvspan(lo, hi, color="tab:blue", alpha=0.12)
        for t in _finite(listed(r, "loss_step_times")):
            ax.axvline(t, color="tab:red", lw=0.9, ls="--")
        ax.set_yscale("log")
        ax.set_xlim(0, right)
        ax.grid(alpha=0.3)
        label(ax, "step", fontsize=8)
        parts = [f"{a.rsplit('.', 1)[-1]}={v:g}" for a, v in ((col, cv), (row, rv)) if a]
        agree = "agree" if r.get(verdict_key("agree")) else "disagree"
        loss, modes = r.get(verdict_key("loss_steps")), r.get(verdict_key("spectral_steps"))
        ax.set_title(f"{', '.join(parts)}: loss {loss} vs modes {modes}, {agree}", fontsize=8)
    label(axes[0][0], y="train/loss")
    title(fig, "loss with detected plateaus (shaded) and drops (red, half-way down); "
          "titles: steps counted from the loss vs from the modes", selection(view, runs))
    return save(fig, path)


def timing_figure(view, table: pd.DataFrame, col: str | None, row: str | None,
                  path: Path) -> Path | None:
    """Observed half-way step against the theory's, every mode of every run with a prediction."""
    plt = pyplot()
    palette = colors()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    points = 0
    groups = table.groupby(row) if row else [(None, table)]
    for g, (rv, part) in enumerate(groups):
        xs, ys = [], []
        for _, r in part.iterrows():
            theory, observed = listed(r, "theory_times"), listed(r, "step_times")
            if theory and observed:
                for t, o in zip(theory, observed):
                    if t is not None and o is not None and t > 0 and o > 0:
                        xs.append(t)
                        ys.append(o)
        if xs:
            name = f"{row.rsplit('.', 1)[-1]}={rv:g}" if row else "runs"
            ax.loglog(xs, ys, "o", color=palette[g % len(palette)], ms=4, label=name)
            points += len(xs)
    if not points:
        plt.close(fig)
        return None
    lo, hi = ax.get_xlim()
    line = np.array([min(lo, ax.get_ylim()[0]), max(hi, ax.get_ylim()[1])])
    ax.plot(line, line, "k-", lw=0.8, label="observed = theory")
    ax.fill_between(line, line * 0.75, line * 1.25, color="k", alpha=0.08, label="±25%")
    ax.set_xlabel("predicted half-way step")
    ax.set_ylabel("observed half-way step")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    title(fig, "step times: observed vs small-init theory",
          f"{view.every_run(table)}, every mode a point")
    return save(fig, path)


def grid_figures(view, panels: dict[str, Callable]) -> list[Path]:
    """Each `file name -> figure(view, runs, cols, rows, col, row, path)` over the sweep's grid
    (runs: `grid_runs`), then
    the observed-vs-theory step times (shared by the stepwise phenomena)."""
    table, out = view.table, view.out
    col, row = _grid(table, view.axes)
    runs = grid_runs(view, col, row)
    if not runs:
        return []
    cols, rows = _values(table, col), _values(table, row)
    written = [figure(view, runs, cols, rows, col, row, out / name)
               for name, figure in panels.items()]
    timing = timing_figure(view, table, col, row, out / "step_times.png")
    return written + ([timing] if timing else [])


def write_figures(view) -> list[Path]:
    return grid_figures(view, {"mode_strengths.png": mode_figure,
                               "loss_plateaus.png": loss_figure})

