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

A fit is only called a power law when the points support one (`PowerLawFit.outcome`):
not_detected when an exponential (log y linear in x) fits better than the power law (log y
linear in log x), or when a quadratic term in log x is significant at the fit's confidence (the
points curve on log-log axes); undetermined when neither rules it out but there are fewer than
MIN_SIZES sizes (with four, the curvature test has one residual degree of freedom: a bending
curve with a few percent of noise passes it); detected otherwise. The exponent and its interval
are reported in every case; the outcome says whether "power law" is the right name for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dynamics_lab.phenomena.base import Outcome

ESTIMATORS = ("trained", "top_k", "seen", "frequency")
FITTED = {"d": ("trained", "top_k", "frequency"), "T": ("trained", "top_k", "seen")}
MIN_SIZES = 5  # fewer leave the curvature test too weak to confirm a power law


@dataclass
class PowerLawFit:
    """y ~ prefactor * x^-exponent, fitted by least squares on log-log axes."""

    exponent: float
    ci_low: float
    ci_high: float
    prefactor: float
    r2: float
    n: int
    outcome: Outcome = Outcome.UNDETERMINED  # detected: the points follow a power law
    reason: str = ""

    def covers(self, value: float | None) -> bool | None:
        return None if value is None else bool(self.ci_low <= value <= self.ci_high)


def fit_power_law(x, y, confidence: float = 0.95) -> PowerLawFit:
    """Exponent of y ~ x^-exponent with a Student-t confidence interval (scipy linregress),
    and whether the points follow a power law at all (module docstring)."""
    from scipy import stats  # here, not at the top: runs of other phenomena skip scipy

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[keep], y[keep]
    if len(x) < 3 or len(np.unique(x)) < 2:
        raise ValueError(f"a power-law fit needs >= 3 positive points at 2+ x values, got {len(x)}")
    u, v = np.log(x), np.log(y)
    fit = stats.linregress(u, v)
    half = stats.t.ppf(0.5 + confidence / 2, len(x) - 2) * fit.stderr
    outcome, reason = judge_power_law(x, v, confidence)
    return PowerLawFit(exponent=-fit.slope, ci_low=-fit.slope - half, ci_high=-fit.slope + half,
                       prefactor=math.exp(fit.intercept), r2=fit.rvalue ** 2, n=len(x),
                       outcome=outcome, reason=reason)


def _residual(features: np.ndarray, v: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares residual sum of squares, coefficients and their covariance."""
    coef, *_ = np.linalg.lstsq(features, v, rcond=None)
    ss = float(np.sum((v - features @ coef) ** 2))
    dof = len(v) - features.shape[1]
    cov = np.linalg.pinv(features.T @ features) * (ss / dof if dof > 0 else np.inf)
    return ss, coef, cov


def judge_power_law(x: np.ndarray, log_y: np.ndarray, confidence: float) -> tuple[Outcome, str]:
    """Do the points follow a power law rather than an exponential or a bending curve?"""
    from scipy import stats

    sizes = len(np.unique(x))
    u, ones = np.log(x), np.ones(len(x))
    ss_power, _, _ = _residual(np.column_stack([ones, u]), log_y)
    ss_exp, _, _ = _residual(np.column_stack([ones, x]), log_y)
    if ss_exp < ss_power:
        return (Outcome.NOT_DETECTED, f"an exponential fits better than a power law (residuals "
                f"{ss_exp:.2g} vs {ss_power:.2g} in log y)")
    if len(x) > 3:
        _, coef, cov = _residual(np.column_stack([ones, u, u ** 2]), log_y)
        se = math.sqrt(cov[2, 2]) if np.isfinite(cov[2, 2]) else float("inf")
        t = abs(coef[2]) / se if se > 0 else float("inf")
        if t > stats.t.ppf(0.5 + confidence / 2, len(x) - 3):
            return (Outcome.NOT_DETECTED,
                    f"the points curve on log-log axes (quadratic term t={t:.1f})")
    if sizes < MIN_SIZES:
        return (Outcome.UNDETERMINED,
                f"{sizes} sizes: too few to confirm a power law (need {MIN_SIZES})")
    return Outcome.DETECTED, f"a straight line on log-log axes through {sizes} sizes"


def theory_exponent(estimator: str, axis: str, alpha: float) -> float | None:
    """The decay exponent the theory predicts for an estimator along axis 'd' or 'T' (or None)."""
    if axis == "T":
        return (alpha - 1) / alpha if estimator in ("top_k", "seen", "frequency") else None
    return {"top_k": alpha - 1, "frequency": (alpha - 1) / (2 * alpha)}.get(estimator)


def scaling_fits(table: pd.DataFrame, alpha: float, fit_d: tuple | None = None,
                 fit_T: tuple | None = None) -> pd.DataFrame:
    """Per estimator: error vs d at the largest T, and error vs T at the largest d, fitted.

    `table` has columns d, T and error_<estimator> (one row per run, as the sweep table has);
    `fit_d` / `fit_T` restrict each fit to a [lo, hi] range (the regime the law is about).
    """
    rows = []
    for axis, other, window in (("d", "T", fit_d), ("T", "d", fit_T)):
        if axis not in table or other not in table or table[axis].nunique() < 3:
            continue
        fixed = table[other].max()
        line = table[table[other] == fixed]
        if window is not None:
            line = line[(line[axis] >= window[0]) & (line[axis] <= window[1])]
        for estimator in FITTED[axis]:
            column = f"error_{estimator}"
            if column not in line:
                continue
            points = line[[axis, column]].dropna().groupby(axis)[column].mean()
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
