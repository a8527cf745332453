"""Samples to learn XOR against the input dimension d, at a step size tuned per d.

Glasgow (2023) bounds the sample complexity: SGD reaches small test error from d polylog(d)
samples. The quantity measured is samples_to_target (steps x batch until the test error stays
at or below the detector's target). Per d, the tuned step size is the one of the swept grid
with the fewest samples (mean over seeds; a step size with a seed that never reached the target
is out). At the tuned step size, over all seeds:
  power law    log samples = a + b log d by least squares, b with a Student-t 95% interval
  forms        samples = C g(d) for g = d, d log d, d log^2 d (one free constant each): the rms
               of the log residuals and the AIC (n log(RSS / n) + 2 k); a delta AIC under 2
               means the data do not tell two forms apart
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from dynamics_lab.phenomena.columns import verdict_key

DIM, LR = "task.n", "optim.lr"
SAMPLES = verdict_key("samples_to_target")  # the run table's column of the verdict field
FORMS = {"d": lambda d: d, "d log d": lambda d: d * np.log(d),
         "d log^2 d": lambda d: d * np.log(d) ** 2}
INDISTINCT_AIC = 2.0


def tuned_table(table: pd.DataFrame, dim: str = DIM, lr: str = LR) -> pd.DataFrame:
    """Per d: the step-size grid, samples (mean over seeds) at each step size, the tuned one and
    whether it sits at the grid's edge (the optimum may lie outside the grid)."""
    if dim not in table or SAMPLES not in table:
        return pd.DataFrame()
    rows = []
    for d, part in table.groupby(dim):
        grid = sorted(part[lr].unique()) if lr in part else [float("nan")]
        means = {}
        for value in grid:
            runs = part[part[lr] == value] if lr in part else part
            samples = pd.to_numeric(runs[SAMPLES], errors="coerce")
            means[value] = float(samples.mean()) if samples.notna().all() and len(samples) \
                else float("inf")
        best = min(means, key=means.get)
        finite = math.isfinite(means[best])
        rows.append({dim: d, "lr_grid": " ".join(f"{v:g}" for v in grid),
                     "tuned_lr": best if finite else float("nan"),
                     "at_grid_edge": bool(finite and len(grid) > 1 and best in (grid[0], grid[-1])),
                     **{f"samples_at_lr_{v:g}": m for v, m in means.items()}})
    return pd.DataFrame(rows)


def tuned_points(table: pd.DataFrame, tuned: pd.DataFrame, dim: str = DIM,
                 lr: str = LR) -> pd.DataFrame:
    """(d, seed, samples) of every run at its d's tuned step size."""
    if not len(tuned):
        return pd.DataFrame(columns=[dim, "seed", SAMPLES])
    keep = table.merge(tuned[[dim, "tuned_lr"]], on=dim)
    if lr in keep:
        keep = keep[np.isclose(keep[lr].astype(float), keep["tuned_lr"].astype(float))]
    out = keep[[dim, "seed", SAMPLES]].copy() if "seed" in keep else keep[[dim, SAMPLES]].copy()
    out[SAMPLES] = pd.to_numeric(out[SAMPLES], errors="coerce")
    return out.dropna(subset=[SAMPLES]).reset_index(drop=True)


def per_dimension(points: pd.DataFrame, dim: str = DIM) -> pd.DataFrame:
    """Mean samples per d over seeds, with a Student-t 95% interval."""
    rows = []
    for d, part in points.groupby(dim):
        mean, low, high = t_interval(part[SAMPLES].to_numpy(float))
        rows.append({dim: d, "seeds": len(part), "samples_mean": mean, "samples_ci_low": low,
                     "samples_ci_high": high})
    return pd.DataFrame(rows)


def form_fits(points: pd.DataFrame, dim: str = DIM) -> pd.DataFrame:
    """The free power law and the three d-polylog forms fitted to log samples (all seeds)."""
    x = points[dim].to_numpy(float)
    y = np.log(points[SAMPLES].to_numpy(float))
    n, rows = len(x), []
    if n < 3 or len(np.unique(x)) < 2:
        return pd.DataFrame()
    lx = np.log(x)
    slope, intercept, _, _, stderr = stats.linregress(lx, y)
    half = float(stats.t.ppf(0.975, n - 2) * stderr)
    rss = float(np.sum((y - intercept - slope * lx) ** 2))
    rows.append(dict(form="d^b", exponent=slope, ci_low=slope - half, ci_high=slope + half,
                     constant=math.exp(intercept), rms_log=math.sqrt(rss / n),
                     aic=_aic(rss, n, 2), n=n))
    for name, g in FORMS.items():
        log_c = float(np.mean(y - np.log(g(x))))
        rss = float(np.sum((y - log_c - np.log(g(x))) ** 2))
        rows.append(dict(form=name, exponent=float("nan"), ci_low=float("nan"),
                         ci_high=float("nan"), constant=math.exp(log_c),
                         rms_log=math.sqrt(rss / n), aic=_aic(rss, n, 1), n=n))
    fits = pd.DataFrame(rows)
    fits["delta_aic"] = fits["aic"] - fits["aic"].min()
    return fits


def t_interval(x: np.ndarray) -> tuple[float, float, float]:
    """Mean and Student-t 95% interval (NaN bounds under two values)."""
    x = x[np.isfinite(x)]
    if not len(x):
        return float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    if len(x) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def _aic(rss: float, n: int, k: int) -> float:
    return n * math.log(max(rss, 1e-300) / n) + 2 * k


def local_exponents(d_low: float, d_high: float) -> dict[str, float]:
    """The log-log slope each form has across [d_low, d_high] (d: 1, d log^2 d: 1 + ...)."""
    return {name: float(np.log(g(np.array(d_high)) / g(np.array(d_low))) / np.log(d_high / d_low))
            for name, g in FORMS.items()}


def distinguishes(fits: pd.DataFrame) -> str:
    """What the three d-polylog forms' fits tell apart, in words."""
    forms = fits[fits["form"].isin(FORMS)].sort_values("aic")
    if not len(forms):
        return "no fit"
    best = forms.iloc[0]
    close = [f for f, a in zip(forms["form"], forms["aic"] - best["aic"]) if a < INDISTINCT_AIC]
    if len(close) == len(forms):
        return f"the fits do not tell {', '.join(FORMS)} apart (delta AIC < {INDISTINCT_AIC:g})"
    return (f"of C d, C d log d, C d log^2 d, {' and '.join(close)} fits best; "
            + ", ".join(f"{f} delta AIC {a:.1f}" for f, a in zip(forms["form"],
                                                                  forms["aic"] - best["aic"])
                        if a >= INDISTINCT_AIC))
