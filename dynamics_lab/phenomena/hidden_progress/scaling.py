"""How long sparse parity takes to learn as the input dimension n grows, for each k: the exponent
b of steps ~ n^b across a sweep over task.n and task.k.

Per run, the learning step is where the population loss (val/loss, median of three evaluations)
first falls to half its initial value, interpolated between evaluations: the end of the plateau
for k >= 3, and the end of the short search for k = 2, which has no plateau in the detector's
sense. For runs the detector judged, the plateau length is fitted too. Barak et al. (2022) find
learning at ~n^O(k) steps, near the statistical-query lower bound of ~n^k queries: the exponent
grows with k. The exponent is fitted by least squares on log-log axes over every run (seeds
as repeats), with a Student-t 95% interval; `ordering` says whether the exponents keep the
theory's order (larger k, larger exponent): `agrees` when each k's interval lies above the
previous k's, `contradicts` when it lies below, `undecided` when they overlap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from dynamics_lab.phenomena.columns import verdict_key
from dynamics_lab.phenomena.curves import rolling_median, series

DIM, K = "task.n", "task.k"
# Fitted quantities: their names in the fits, their columns in the run table.
QUANTITIES = (("learning_step", "learning_step"),
              ("plateau_length", verdict_key("plateau_length")))


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


def seed_exponent(sizes, lengths) -> dict:
    """{exponent, ci_low, ci_high, prefactor, r2, n, sizes} of lengths ~ prefactor * sizes^b,
    least squares over every positive point (repeats of a size kept as repeats)."""
    x, y = np.asarray(sizes, float), np.asarray(lengths, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = np.log(x[ok]), np.log(y[ok])
    nan = float("nan")
    out = dict(exponent=nan, ci_low=nan, ci_high=nan, prefactor=nan, r2=nan, n=int(ok.sum()),
               n_sizes=len(np.unique(x)))
    if len(np.unique(x)) < 2:
        return out
    fit = stats.linregress(x, y)
    out.update(exponent=float(fit.slope), prefactor=float(np.exp(fit.intercept)),
               r2=float(fit.rvalue ** 2))
    if len(x) >= 3:
        half = float(stats.t.ppf(0.975, len(x) - 2) * fit.stderr)
        out.update(ci_low=out["exponent"] - half, ci_high=out["exponent"] + half)
    return out


def ordering(fits: pd.DataFrame, quantity: str = "learning_step") -> str:
    """Whether the exponents grow with k as the theory orders them (see the module doc)."""
    rows = fits[fits["quantity"] == quantity].sort_values("k") if len(fits) else fits
    if len(rows) < 2 or rows["ci_low"].isna().any():
        return "undecided"
    pairs = list(zip(rows.iloc[:-1].itertuples(), rows.iloc[1:].itertuples()))
    if all(b.ci_low > a.ci_high for a, b in pairs):
        return "agrees"
    if any(b.ci_high < a.ci_low for a, b in pairs):
        return "contradicts"
    return "undecided"


def learning_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (k, n): runs, how many learned, and the learning step's mean with a 95% interval."""
    rows = []
    for (k, n), part in runs.groupby([K, DIM]):
        steps = pd.to_numeric(part["learning_step"], errors="coerce").dropna().to_numpy()
        mean = float(steps.mean()) if len(steps) else float("nan")
        half = (float(stats.t.ppf(0.975, len(steps) - 1) * steps.std(ddof=1)
                      / np.sqrt(len(steps))) if len(steps) >= 2 else float("nan"))
        rows.append({"k": int(k), "n": n, "runs": len(part), "learned": len(steps),
                     "learning_step_mean": mean, "learning_step_ci_low": mean - half,
                     "learning_step_ci_high": mean + half})
    return pd.DataFrame(rows)


def scaling_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per k: the learning step (and the plateau length of detected runs) fitted against n,
    every seed a point; `ordering` across k on each quantity."""
    if DIM not in runs or K not in runs:
        return pd.DataFrame()
    rows = []
    for k, part in runs.groupby(K):
        for quantity, column in QUANTITIES:
            if column not in part:
                continue
            points = part[[DIM, column]].apply(pd.to_numeric, errors="coerce")
            if column != "learning_step" and verdict_key("outcome") in part:
                points = points[part[verdict_key("outcome")] == "detected"]
            points = points.dropna()
            fit = seed_exponent(points[DIM], points[column])
            rows.append(dict(k=int(k), quantity=quantity, **fit,
                             sizes=" ".join(f"{v:g}" for v in sorted(points[DIM].unique())),
                             paper="n^O(k) steps; SQ lower bound ~n^k queries"))
    fits = pd.DataFrame(rows)
    if len(fits):
        fits["ordering"] = fits["quantity"].map(lambda q: ordering(fits, q))
    return fits


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
        ax.loglog(part[DIM], part["learning_step"], "o", color=color, alpha=0.35, ms=4)
        means = part.groupby(DIM)["learning_step"].mean()
        ax.loglog(means.index, means.to_numpy(), "o-", color=color, label=label)
    values = sorted(runs[DIM].dropna().unique())
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.minorticks_off()
    ax.set_xlabel("input dimension n")
    ax.set_ylabel("step where the loss halves")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, title="exponent [95% CI] (paper: n^O(k))", title_fontsize=7)
    order = ordering(fits)
    flag = {"agrees": "exponents grow with k, as n^O(k) orders them",
            "contradicts": "FLAG: the exponents do not grow with k (theory: they should)",
            "undecided": "the exponents' intervals overlap: the order in k is undecided"}[order]
    ax.set_title(f"sparse parity: steps to learn vs n\n{flag}", fontsize=8,
                 color="tab:red" if order == "contradicts" else "k")
    return save(fig, path)
