"""What every report figure shows beside its curves, drawn the same way everywhere: axes labelled
in words, the verdict's key steps marked, a metric as the mean over a grid point's seeds with
its 95% band (a summary's too, against a swept key: per_seed), and a title that names which runs
are shown (plotting.py draws; SweepView picks)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from dynamics_lab.phenomena.columns import verdict_of
from dynamics_lab.phenomena.labels import words
from dynamics_lab.phenomena.plotting import seed_band, step_marks

STYLES = ("--", ":", "-.", (0, (5, 1, 1, 1)))  # one per key step, so a legend tells them apart


def label(ax, x: str | None = None, y: str | None = None, **kwargs) -> None:
    """Axis labels in words (labels.words) for config keys and metric names."""
    if x is not None:
        ax.set_xlabel(words(x), **kwargs)
    if y is not None:
        ax.set_ylabel(words(y), **kwargs)


def mark_steps(ax, row, color: str = "0.3", legend: bool = True,
               keys: Sequence[str] | None = None) -> list[float]:
    """Vertical lines at the key steps of a run's verdict (its `*_step` fields, or `keys`), read
    from the run's table row, each labelled with its name and step; returns the steps drawn."""
    marks = step_marks(verdict_of(row))
    if keys is not None:
        wanted = {k.removesuffix("_step").replace("_", " ") for k in keys}
        marks = [m for m in marks if m[0] in wanted]
    for (name, step), style in zip(marks, STYLES * 2):
        ax.axvline(step, color=color, lw=0.9, ls=style,
                   label=f"{name} step {step:,.0f}" if legend else None)
    return [step for _, step in marks]


def band(ax, frames: Sequence[pd.DataFrame], column: str, color: str | None = None,
         label: str | None = None, scale: float = 1.0,
         step: Callable[[np.ndarray], np.ndarray] | None = None, **line) -> int:
    """`column` of a grid point's seed runs as their mean with a 95% band (Student t, shown
    within the values the seeds took: few seeds make wide intervals); a single run is its line.
    `scale` multiplies the values, `step` maps the steps (e.g. clip at 1 for a log axis).
    Returns how many seeds were drawn (0: the column is absent)."""
    steps, mean, low, high, n = seed_band(list(frames), column)
    if not n:
        return 0
    xs = step(steps) if step is not None else steps
    drawn = ax.plot(xs, scale * mean, color=color, label=label, **line)
    if n > 1:
        seen = np.concatenate([f[column].dropna().to_numpy(float) for f in frames
                               if column in f])
        ax.fill_between(xs, scale * np.clip(low, seen.min(), seen.max()),
                        scale * np.clip(high, seen.min(), seen.max()),
                        color=drawn[0].get_color(), alpha=0.2, lw=0)
    return n


def per_seed(table: pd.DataFrame, key: str) -> list[pd.DataFrame]:
    """A sweep table's numeric columns as one frame per seed with `key` (a swept key or a verdict
    column, `verdict/<field>`) as the frame's step, the mean where a seed has several rows at one
    value: so `band` draws a verdict field's mean and 95% band over the seeds against that key."""
    parts = [part for _, part in table.groupby("seed")] if "seed" in table else [table]
    return [part.select_dtypes("number").groupby(key, as_index=False).mean()
            .rename(columns={key: "step"}) for part in parts if len(part)]


def seeds_text(counts: Sequence[int]) -> str:
    """'mean and 95% band over 3 seeds' (or '2/3 seeds' when grid points differ), 'one seed'."""
    counts = sorted({c for c in counts if c})
    if not counts or counts[-1] < 2:
        return "one seed per curve"
    return f"mean and 95% band over {'/'.join(map(str, counts))} seeds"


def title(fig, text: str, selection: str, fontsize: float = 10) -> None:
    """The figure's title with the line that names the runs it shows."""
    fig.suptitle(f"{text}\n{selection}" if text else selection, fontsize=fontsize)
