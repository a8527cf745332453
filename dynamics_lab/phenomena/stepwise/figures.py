"""Stepwise figures: mode strengths with predicted step times, loss plateaus, observed vs theory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from dynamics_lab.phenomena.base import Outcome
from dynamics_lab.phenomena.plotting import colors, pyplot, save


def _grid(table: pd.DataFrame, axes: list[str]) -> tuple[str | None, str | None]:
    """(column axis, row axis): init scale across, the other swept key down, when present."""
    col = "model.init_scale" if "model.init_scale" in axes else (axes[0] if axes else None)
    rows = [a for a in axes if a != col]
    return col, rows[0] if rows else None


def _values(table: pd.DataFrame, axis: str | None) -> list:
    return sorted(table[axis].dropna().unique()) if axis else [None]


def _finite(values) -> list[float]:
    return [float(v) for v in (values if isinstance(values, list) else [])
            if v is not None and np.isfinite(v)]


def _runs(view, col: str | None, row: str | None):
    """(row value, col value) -> (verdict row, metrics, singular values) of the first seed."""
    found = {}
    for _, r in view.first_seed().iterrows():
        key = (r[row] if row else None, r[col] if col else None)
        frame = view.metrics(r["run_id"])
        if key in found or frame is None:
            continue
        targets = (view.config(r["run_id"]).get("task") or {}).get("singular_values") or []
        found[key] = (r, frame, targets)
    return found


def _xlim(r: pd.Series, frame: pd.DataFrame) -> float:
    late = _finite(r.get("rise_ends")) + _finite(r.get("theory_times"))
    last = float(frame["step"].max())
    return min(last, 1.4 * max(late)) if late else last


def _panels(n_rows: int, n_cols: int):
    fig, axes = pyplot().subplots(n_rows, n_cols, figsize=(3.3 * n_cols, 2.7 * n_rows),
                                  squeeze=False)
    return fig, axes


def _title(ax, col, cv, row, rv, r) -> None:
    parts = [f"{a.rsplit('.', 1)[-1]}={v:g}" for a, v in ((col, cv), (row, rv)) if a]
    verdict = {Outcome.DETECTED.value: "stepwise", Outcome.UNDETERMINED.value: "undetermined"
               }.get(r.get("outcome"), "not stepwise")
    ax.set_title(f"{', '.join(parts)}: {verdict}", fontsize=8)


def _cells(runs, axes, rows, cols):
    """(ax, row value, col value, run entry) for each grid cell with a run; empty cells hidden."""
    for (i, rv), (j, cv) in ((a, b) for a in enumerate(rows) for b in enumerate(cols)):
        if (rv, cv) in runs:
            yield axes[i][j], rv, cv, runs[(rv, cv)]
        else:
            axes[i][j].axis("off")


def mode_figure(runs, cols, rows, col, row, path: Path) -> Path:
    fig, axes = _panels(len(rows), len(cols))
    palette = colors()
    for ax, rv, cv, (r, frame, targets) in _cells(runs, axes, rows, cols):
        theory = r.get("theory_times") if isinstance(r.get("theory_times"), list) else []
        observed = r.get("step_times") if isinstance(r.get("step_times"), list) else []
        for k, s in enumerate(targets):
            column, color = f"modes/strength_{k}", palette[k % len(palette)]
            if column not in frame:
                continue
            data = frame[["step", column]].dropna()
            ax.plot(data["step"], data[column] / s, color=color, lw=1.4,
                    label=f"mode {k} (s={s:g})")
            if k < len(theory) and theory[k] is not None:
                ax.axvline(theory[k], color=color, ls="--", lw=0.9)
            if k < len(observed) and observed[k] is not None:
                ax.plot([observed[k]], [0.5], "o", color=color, ms=4)
        ax.axhline(1.0, color="k", ls=":", lw=0.8)
        ax.set_xlim(0, _xlim(r, frame))
        ax.grid(alpha=0.3)
        ax.set_xlabel("step", fontsize=8)
        _title(ax, col, cv, row, rv, r)
    axes[0][0].set_ylabel("u_i^T W v_i / s_i")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("mode strengths relative to their targets; dots: observed half-way steps, "
                 "dashed: small-init theory", fontsize=10)
    return save(fig, path)


def loss_figure(runs, cols, rows, col, row, path: Path) -> Path:
    fig, axes = _panels(len(rows), len(cols))
    for ax, rv, cv, (r, frame, _) in _cells(runs, axes, rows, cols):
        column = r.get("loss_metric") if isinstance(r.get("loss_metric"), str) else None
        column = column if column in frame else next(
            (c for c in ("train/batch_loss", "train/loss") if c in frame), None)
        if column is None:
            ax.axis("off")
            continue
        data = frame[["step", column]].dropna()
        right = _xlim(r, frame)
        ax.plot(data["step"], data[column], color="k", lw=1.2)
        shown = data[column][(data["step"] <= right) & (data[column] > 0)]
        if len(shown):
            ax.set_ylim(shown.min() / 2, shown.max() * 2)
        for lo, hi in r.get("plateaus") if isinstance(r.get("plateaus"), list) else []:
            ax.axvspan(lo, hi, color="tab:blue", alpha=0.12)
        for t in _finite(r.get("loss_step_times")):
            ax.axvline(t, color="tab:red", lw=0.9, ls="--")
        ax.set_yscale("log")
        ax.set_xlim(0, right)
        ax.grid(alpha=0.3)
        ax.set_xlabel("step", fontsize=8)
        parts = [f"{a.rsplit('.', 1)[-1]}={v:g}" for a, v in ((col, cv), (row, rv)) if a]
        agree = "agree" if r.get("agree") else "disagree"
        ax.set_title(f"{', '.join(parts)}: loss {r.get('loss_steps')} vs modes "
                     f"{r.get('spectral_steps')}, {agree}", fontsize=8)
    axes[0][0].set_ylabel("train loss")
    fig.suptitle("loss with detected plateaus (shaded) and drops (red, half-way down); "
                 "titles: steps counted from the loss vs from the modes", fontsize=10)
    return save(fig, path)


def timing_figure(table: pd.DataFrame, col: str | None, row: str | None,
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
            theory, observed = r.get("theory_times"), r.get("step_times")
            if isinstance(theory, list) and isinstance(observed, list):
                for t, o in zip(theory, observed):
                    if t is not None and o is not None and t > 0 and o > 0:
                        xs.append(t)
                        ys.append(o)
        if xs:
            label = f"{row.rsplit('.', 1)[-1]}={rv:g}" if row else "runs"
            ax.loglog(xs, ys, "o", color=palette[g % len(palette)], ms=4, label=label)
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
    ax.set_title("step times: observed vs small-init theory", fontsize=10)
    return save(fig, path)


def grid_figures(view, panels: dict[str, Callable]) -> list[Path]:
    """Each `file name -> figure(runs, cols, rows, col, row, path)` over the sweep's grid, then
    the observed-vs-theory step times (shared by the stepwise phenomena)."""
    table, out = view.table, view.out
    col, row = _grid(table, view.axes)
    runs = _runs(view, col, row)
    if not runs:
        return []
    cols, rows = _values(table, col), _values(table, row)
    written = [figure(runs, cols, rows, col, row, out / name) for name, figure in panels.items()]
    timing = timing_figure(table, col, row, out / "step_times.png")
    return written + ([timing] if timing else [])


def write_figures(view) -> list[Path]:
    return grid_figures(view, {"mode_strengths.png": mode_figure,
                               "loss_plateaus.png": loss_figure})

