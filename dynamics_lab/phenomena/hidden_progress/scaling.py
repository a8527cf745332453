"""How long sparse parity takes to learn as the input dimension n grows, for each k: the exponent
b of steps ~ n^b across a sweep over task.n and task.k.

Per run, the learning step is where the population loss (val/loss, median of three evaluations)
first falls to half its initial value, interpolated between evaluations: the end of the plateau
for k >= 3, and the end of the short search for k = 2, which has no plateau in the detector's
sense. For runs the detector judged, the plateau length is fitted too. Barak et al. (2022) find
learning at ~n^O(k) steps, near the statistical-query lower bound of ~n^k queries: the exponent
grows with k.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dynamics_lab.phenomena.curves import rolling_median, series
from dynamics_lab.phenomena.growth import growth_exponent

DIM, K = "task.n", "task.k"


def learning_step(metrics: pd.DataFrame, column: str = "val/loss") -> float | None:
    """The step where the smoothed loss first reaches half its initial value (interpolated)."""
    steps, loss = series(metrics, column)
    if len(loss) < 3:
        return None
    smooth = rolling_median(loss)
    target = smooth[0] / 2
    below = np.flatnonzero(smooth <= target)
    if not len(below) or below[0] == 0:
        return None
    i = int(below[0])
    # Linear interpolation between the last evaluation above and the first at or below.
    x0, x1, y0, y1 = steps[i - 1], steps[i], smooth[i - 1], smooth[i]
    return float(x0 + (y0 - target) / (y0 - y1) * (x1 - x0)) if y0 != y1 else float(x1)


def learning_table(view) -> pd.DataFrame:
    """The sweep's runs with their learning step (None where the loss never halved)."""
    table = view.table.copy()
    table["learning_step"] = [
        learning_step(frame) if (frame := view.metrics(run_id)) is not None else None
        for run_id in table["run_id"]]
    return table


def scaling_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per k: the learning step (and the plateau length of detected runs) fitted against n."""
    if DIM not in runs or K not in runs:
        return pd.DataFrame()
    rows = []
    for k, part in runs.groupby(K):
        for quantity in ("learning_step", "plateau_length"):
            if quantity not in part:
                continue
            points = part[[DIM, quantity]].apply(pd.to_numeric, errors="coerce")
            if quantity == "plateau_length" and "outcome" in part:
                points = points[part["outcome"] == "detected"]
            points = points.dropna()
            fit = growth_exponent(points[DIM], points[quantity])
            rows.append(dict(k=int(k), quantity=quantity, **fit,
                             sizes=" ".join(f"{v:g}" for v in sorted(points[DIM].unique())),
                             paper="n^O(k) steps; SQ lower bound ~n^k queries"))
    return pd.DataFrame(rows)


def scaling_figure(runs: pd.DataFrame, fits: pd.DataFrame, path) -> object:
    """Learning step against n on log-log axes, one line per k, with the fitted exponents."""
    from dynamics_lab.phenomena.growth import format_exponent
    from dynamics_lab.phenomena.plotting import colors, pyplot, save

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for color, (k, part) in zip(colors(), runs.groupby(K)):
        part = part.dropna(subset=["learning_step"]).sort_values(DIM)
        fit = fits[(fits["k"] == k) & (fits["quantity"] == "learning_step")]
        label = f"k={k}"
        if len(fit):
            label += f": n^{format_exponent(fit.iloc[0].to_dict())}"
        ax.loglog(part[DIM], part["learning_step"], "o-", color=color, label=label)
    values = sorted(runs[DIM].dropna().unique())
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.minorticks_off()
    ax.set_xlabel("input dimension n")
    ax.set_ylabel("step where the loss halves")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, title="exponent (paper: n^O(k))", title_fontsize=7)
    ax.set_title("sparse parity: steps to learn vs n", fontsize=10)
    return save(fig, path)
