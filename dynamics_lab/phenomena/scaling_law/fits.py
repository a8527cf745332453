"""Associative-memory scaling laws: power-law fits with confidence intervals, a test that the
points follow a power law at all, and the theory exponents.

Theory (Cabannes, Dohmatob, Bietti 2023) for p(x) ~ x^-alpha, alpha > 1, random embeddings in R^d,
T samples, memories W = sum_x q(x) u_{f(x)} e_x^T (models/memory.py), error = population error:
- data-limited (d large): no memory can recall a token it never saw, and the unseen mass is
  sum_x p(x) (1 - p(x))^T ~ T^-(alpha-1)/alpha. `seen` and `top_k` attain it.
- memory-limited (T large): `top_k` keeps the ~capacity * d most frequent tokens, each recalled
  cleanly, so its error is the tail mass beyond rank ~d: d^-(alpha-1).
  `frequency` (q = empirical p) lets the frequent tokens' interference, of size ~p(1)/sqrt(d),
  drown every token with p(x) below it: error ~ d^-(alpha-1)/(2 alpha).
  `seen` stores every seen token with weight 1; once ~T^(1/alpha) of them exceed what d dimensions
  hold, their interference drives the error toward chance: no power law in d (theory None).
- the trained W (SGD on cross-entropy) has no closed-form law here; its exponent is measured only.
So error ~ d^-(alpha-1) + T^-(alpha-1)/alpha for top_k, and d^-(alpha-1)/(2 alpha) +
T^-(alpha-1)/alpha for frequency. The sweep fits (`FITTED`) cover the memories whose law along
that axis is reachable: along d the trained, top_k and frequency memories; along T the trained,
top_k and seen ones. `frequency` reaches its data term only when d^-1/4 << T^-1/2, i.e. d >> T^2,
and `seen` has no law in d, so those two are drawn but not fitted.

The fit itself, and the test that the points follow a power law at all, are shared
(phenomena/power_law.py).
"""

from __future__ import annotations

import pandas as pd

from dynamics_lab.phenomena.columns import verdict_key
from dynamics_lab.phenomena.power_law import PowerLawFit, fit_power_law, judge_power_law

ESTIMATORS = ("trained", "top_k", "seen", "frequency")
FITTED = {"d": ("trained", "top_k", "frequency"), "T": ("trained", "top_k", "seen")}
AXES = {"d": verdict_key("d"), "T": verdict_key("T")}  # each axis's column in the run table

__all__ = ["AXES", "ESTIMATORS", "FITTED", "PowerLawFit", "error_column", "fit_power_law",
           "judge_power_law", "scaling_fits", "theory_exponent"]


def error_column(estimator: str) -> str:
    """The run table's column of an estimator's population error (a verdict field)."""
    return verdict_key(f"error_{estimator}")


def theory_exponent(estimator: str, axis: str, alpha: float) -> float | None:
    """The decay exponent the theory predicts for an estimator along axis 'd' or 'T' (or None)."""
    if axis == "T":
        return (alpha - 1) / alpha if estimator in ("top_k", "seen", "frequency") else None
    return {"top_k": alpha - 1, "frequency": (alpha - 1) / (2 * alpha)}.get(estimator)


def scaling_fits(table: pd.DataFrame, alpha: float, fit_d: tuple | None = None,
                 fit_T: tuple | None = None) -> pd.DataFrame:
    """Per estimator: error vs d at the largest T, and error vs T at the largest d, fitted.

    `table` has the verdict columns of d, T and each estimator's error (`AXES`, `error_column`;
    one row per run, as the sweep table has); `fit_d` / `fit_T` restrict each fit to a [lo, hi]
    range (the regime the law is about).
    """
    rows = []
    for axis, other, window in (("d", "T", fit_d), ("T", "d", fit_T)):
        x, fixed_by = AXES[axis], AXES[other]
        if x not in table or fixed_by not in table or table[x].nunique() < 3:
            continue
        fixed = table[fixed_by].max()
        line = table[table[fixed_by] == fixed]
        if window is not None:
            line = line[(line[x] >= window[0]) & (line[x] <= window[1])]
        for estimator in FITTED[axis]:
            column = error_column(estimator)
            if column not in line:
                continue
            points = line[[x, column]].dropna().groupby(x)[column].mean()
            try:
                fit = fit_power_law(points.index, points.to_numpy())
            except ValueError:
                continue
            theory = theory_exponent(estimator, axis, alpha)
            rows.append(dict(estimator=estimator, axis=axis, fixed=f"{other}={fixed:g}",
                             n=fit.n, exponent=fit.exponent, ci_low=fit.ci_low,
                             ci_high=fit.ci_high, prefactor=fit.prefactor, r2=fit.r2,
                             theory=theory, covered=fit.covers(theory),
                             power_law=fit.outcome.value, reason=fit.reason))
    return pd.DataFrame(rows)
