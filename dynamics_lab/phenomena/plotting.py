"""Figure helpers shared by the phenomena's report figures: headless pyplot, saving (PNG and PDF,
size and style settable), axis labels in words, metric curves over steps (seed bands, the
verdict's key steps marked) and phase diagrams over two swept keys. matplotlib is imported on
first use, so detectors load without it.

Settings come from `configure(...)` or the environment: DYNLAB_FIG_FORMATS (default `png,pdf`),
DYNLAB_FIG_DPI (200), DYNLAB_FIG_SCALE (1.0, multiplies every figure's size) and
DYNLAB_FIG_STYLE (a matplotlib style name or file, e.g. `seaborn-v0_8-paper`). What a report
knows of each run (its verdict, its other seeds, failed runs) arrives in the frames' attrs
(report/context.py); without it the helpers draw what they are given.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from dynamics_lab.phenomena.base import Outcome
from dynamics_lab.phenomena.columns import verdict_key
from dynamics_lab.phenomena.labels import WORDS as WORDS
from dynamics_lab.phenomena.labels import words


@dataclass(frozen=True)
class FigureSettings:
    formats: tuple[str, ...] = ("png", "pdf")  # the first is the path a helper returns
    dpi: int = 200
    scale: float = 1.0
    style: str | None = None

    @classmethod
    def from_env(cls) -> FigureSettings:
        env = os.environ
        formats = tuple(f.strip().lstrip(".") for f in env.get("DYNLAB_FIG_FORMATS", "").split(",")
                        if f.strip())
        return cls(formats=formats or cls.formats, dpi=int(env.get("DYNLAB_FIG_DPI", cls.dpi)),
                   scale=float(env.get("DYNLAB_FIG_SCALE", cls.scale)),
                   style=env.get("DYNLAB_FIG_STYLE") or None)


_settings: list[FigureSettings] = []  # set by configure(); else read from the environment
_applied_style: list[str | None] = [None]


def settings() -> FigureSettings:
    return _settings[-1] if _settings else FigureSettings.from_env()


def configure(**changes) -> FigureSettings:
    """Change the figure settings for this process (formats, dpi, scale, style)."""
    new = replace(settings(), **changes)
    _settings[:] = [new]
    return new


def pyplot():
    """matplotlib.pyplot on the headless Agg backend (reports are written without a display),
    with the configured style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    style = settings().style
    if style != _applied_style[0]:
        plt.style.use(style or "default")
        _applied_style[0] = style
    return plt


def colors() -> list[str]:
    return pyplot().rcParams["axes.prop_cycle"].by_key()["color"]


def save(fig, path: Path) -> Path:
    """Write the figure in every configured format beside `path` (same stem); returns the path
    of the first format (PNG by default)."""
    plt = pyplot()
    s = settings()
    if s.scale != 1.0:
        width, height = fig.get_size_inches()
        fig.set_size_inches(width * s.scale, height * s.scale)
    fig.tight_layout()
    paths = [Path(path).with_suffix("." + f) for f in s.formats]
    for out in paths:
        fig.savefig(out, dpi=s.dpi)
    plt.close(fig)
    return paths[0]


def step_marks(verdict) -> list[tuple[str, float]]:
    """(label, step) of a verdict's key steps (fields named *_step with a number), from its
    fields (a verdict.json dict; `verdict_of` gives a table row's)."""
    marks = []
    for key, value in dict(verdict if verdict is not None else {}).items():
        if (str(key).endswith("_step") and isinstance(value, numbers.Real)
                and not isinstance(value, bool) and np.isfinite(value)):
            marks.append((str(key)[:-5].replace("_", " "), float(value)))
    return sorted(marks, key=lambda m: m[1])


def seed_band(frames: Sequence[pd.DataFrame], column: str
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """(steps, mean, low, high, n) of `column` across runs on their common steps: the mean and
    a 95% Student-t interval over the seeds (low = high = mean with one seed)."""
    from scipy import stats

    series = [f[["step", column]].dropna().set_index("step")[column] for f in frames
              if column in f]
    series = [s[~s.index.duplicated(keep="last")] for s in series if len(s)]
    if not series:
        empty = np.zeros(0)
        return empty, empty, empty, empty, 0
    joined = pd.concat(series, axis=1, join="inner").sort_index()
    values = joined.to_numpy(float)
    n = values.shape[1]
    mean = values.mean(axis=1)
    if n < 2:
        return joined.index.to_numpy(float), mean, mean, mean, n
    half = stats.t.ppf(0.975, n - 1) * values.std(axis=1, ddof=1) / np.sqrt(n)
    return joined.index.to_numpy(float), mean, mean - half, mean + half, n


def curves(runs: dict[str, pd.DataFrame], columns: Sequence[tuple[str, str]], path: Path,
           title: str = "", logx: bool = True, ylabel: str = "") -> Path:
    """One panel per run (grid point); each (column, label) drawn against the training step as
    the mean over the grid point's seeds with a 95% band when the report gave the seeds (shown
    within the range of values the seeds took), the verdict's key steps marked. Step 0 stays
    at 0 (the axis is linear up to the first logged step)."""
    plt = pyplot()
    n = max(len(runs), 1)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.4), sharey=True, squeeze=False)
    seeds_shown = set()
    for ax, (name, frame) in zip(axes[0], runs.items()):
        seed_runs = frame.attrs.get("seed_runs")
        frames = seed_runs() if callable(seed_runs) else [frame]
        for (column, label), color in zip(columns, colors()):
            steps, mean, low, high, k = seed_band(frames or [frame], column)
            if not len(steps):
                continue
            seeds_shown.add(k)
            ax.plot(steps, mean, color=color, label=label)
            if k > 1:  # drawn within the values the seeds took: few seeds make wide intervals
                seen = np.concatenate([f[column].dropna().to_numpy(float) for f in frames
                                       if column in f])
                ax.fill_between(steps, np.clip(low, seen.min(), seen.max()),
                                np.clip(high, seen.min(), seen.max()), color=color, alpha=0.2,
                                lw=0)
        marks = step_marks(frame.attrs.get("verdict"))
        for (label, step), style in zip(marks, ("--", ":", "-.", "--")):
            ax.axvline(step, color="0.3", lw=0.9, ls=style, label=f"{label} step {step:,.0f}")
        positive = frame["step"][frame["step"] > 0] if "step" in frame else []
        if logx and len(positive):  # log steps, linear below the first step after 0
            ax.set_xscale("symlog", linthresh=float(positive.min()), linscale=1.0)
            ax.set_xlim(left=0)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(words("step"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(ylabel)
    seeds = (f"mean and 95% band over {'/'.join(map(str, sorted(seeds_shown)))} seed(s)"
             if seeds_shown and max(seeds_shown) > 1 else "one seed")
    grid = max((f.attrs.get("grid_points", 0) for f in runs.values()), default=0)
    if grid > len(runs):  # name the selection: which grid points the panels are
        seeds = f"{len(runs)} of {grid} grid points (panel titles; other keys at middle values); " \
                + seeds
    elif grid:
        seeds = f"all {grid} grid point{'s' if grid != 1 else ''}; " + seeds
    fig.suptitle(f"{title}\n{seeds}; dashed lines: the verdict's key steps (lowest seed)"
                 if title else seeds, fontsize=10)
    return save(fig, path)


@dataclass
class Cell:
    """What one grid cell of a phase diagram holds."""

    value: float = float("nan")  # mean over the seeds that showed it
    shown: int = 0
    never: int = 0
    ran_out: int = 0
    failed: int = 0
    values: list = field(default_factory=list)  # of the seeds that showed it

    def text(self, annotate: str) -> str:
        runs = self.shown + self.never + self.ran_out + self.failed
        if self.shown:
            return annotate.format(self.value) + (f"\n{self.shown}/{runs}" if runs > 1 else "")
        if self.failed == runs:
            return "failed"
        return "ran out\nof steps" if self.ran_out else "never"


def _cells(table: pd.DataFrame, x: str, y: str, value: str) -> dict[tuple, Cell]:
    runs = table.attrs.get("runs")
    every = runs if isinstance(runs, pd.DataFrame) and {x, y} <= set(runs) else table
    cells: dict[tuple, Cell] = {}
    finished = set(table["run_id"]) if "run_id" in table else None
    values = table.set_index("run_id")[value] if "run_id" in table else None
    for _, row in every.iterrows():
        cell = cells.setdefault((row[x], row[y]), Cell())
        run_id = row.get("run_id")
        if finished is not None and run_id not in finished:
            cell.failed += 1
            continue
        v = float(values[run_id]) if values is not None else float(row[value])
        outcome = row.get(verdict_key("outcome"))
        if np.isfinite(v):
            cell.values.append(v)
            cell.shown += 1
        elif outcome == Outcome.UNDETERMINED.value:
            cell.ran_out += 1
        else:
            cell.never += 1
    for cell in cells.values():
        if cell.values:
            cell.value = float(np.mean(cell.values))
    return cells


def phase_diagram(table: pd.DataFrame, x: str, y: str, value: str, path: Path, title: str = "",
                  log_value: bool = True, missing_label: str = "-",
                  annotate: str | None = None) -> Path:
    """Heatmap of `value` over the grid (x, y), mean over the seeds that showed it. Cells
    without a value say why: "never" (not detected), "ran out of steps" (undetermined: the run
    ended too soon to tell) or "failed" (failed or missing runs, from the report's table of
    every run). The colour bar is in the value's own units (a log scale when `log_value`), and
    drawn only when at least two cells differ. `missing_label` is kept for callers; the states
    above replace it."""
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.patches import Rectangle

    plt = pyplot()
    cells = _cells(table, x, y, value)
    xs = sorted({k[0] for k in cells if pd.notna(k[0])})
    ys = sorted({k[1] for k in cells if pd.notna(k[1])})
    data = np.full((len(ys), len(xs)), np.nan)
    for (cx, cy), cell in cells.items():
        if cx in xs and cy in ys:
            data[ys.index(cy), xs.index(cx)] = cell.value
    finite = data[np.isfinite(data)]
    positive = finite[finite > 0]
    use_log = log_value and len(positive) == len(finite) and len(finite) > 0
    low, high = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
    norm = LogNorm(low, high) if use_log and high > low else Normalize(low, high or 1.0)
    fig, ax = plt.subplots(figsize=(1.4 * len(xs) + 2.8, 1.0 * len(ys) + 2.0))
    ax.set_facecolor("0.92")
    image = ax.imshow(np.ma.masked_invalid(data), origin="lower", cmap="viridis", aspect="auto",
                      norm=norm)
    if len(np.unique(finite)) >= 2:
        fig.colorbar(image, ax=ax, label=words(value))
    ax.set_xticks(range(len(xs)), [f"{v:g}" if isinstance(v, float) else str(v) for v in xs])
    ax.set_yticks(range(len(ys)), [f"{v:g}" if isinstance(v, float) else str(v) for v in ys])
    ax.set_xlabel(words(x))
    ax.set_ylabel(words(y))
    for (cx, cy), cell in cells.items():
        if cx not in xs or cy not in ys:
            continue
        i, j = ys.index(cy), xs.index(cx)
        text = cell.text(annotate or "{:.3g}")
        if text == "failed":  # hatched: a failed cell must not pass for one never run
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//",
                                   edgecolor="tab:red", lw=0, alpha=0.5))
        ax.text(j, i, text, ha="center", va="center", fontsize=7,
                color="white" if cell.shown else ("tab:red" if text == "failed" else "black"))
    states = "blank cells: never = not detected; ran out of steps = undetermined; failed"
    ax.set_title(f"{title}\n{states}" if title else states, fontsize=9)
    return save(fig, path)
