"""Power-law fits with a Student-t confidence interval, and the test that points follow a power
law at all: shared by the phenomena that fit one (a scaling law across a sweep, a duration that
grows with a problem size).

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

from dynamics_lab.phenomena.base import Outcome

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
