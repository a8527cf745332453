"""Associative-memory scaling laws: power-law fits with confidence intervals, theory exponents, and
the per-run `scaling_law` detector (one run's final errors; the sweep-level fit is in the report).

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field
from scipy import stats

from dynamics_lab.phenomena.base import Detector, Verdict, format_step, last_value
from dynamics_lab.registry import PHENOMENA
from dynamics_lab.schema import NamedSection

ESTIMATORS = ("trained", "top_k", "seen", "frequency")
FITTED = {"d": ("trained", "top_k", "frequency"), "T": ("trained", "top_k", "seen")}


@dataclass
class PowerLawFit:
    """y ~ prefactor * x^-exponent, fitted by least squares on log-log axes."""

    exponent: float
    ci_low: float
    ci_high: float
    prefactor: float
    r2: float
    n: int

    def covers(self, value: float | None) -> bool | None:
        return None if value is None else bool(self.ci_low <= value <= self.ci_high)


def fit_power_law(x, y, confidence: float = 0.95) -> PowerLawFit:
    """Exponent of y ~ x^-exponent with a Student-t confidence interval (scipy linregress)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[keep], y[keep]
    if len(x) < 3 or len(np.unique(x)) < 2:
        raise ValueError(f"a power-law fit needs >= 3 positive points at 2+ x values, got {len(x)}")
    fit = stats.linregress(np.log(x), np.log(y))
    half = stats.t.ppf(0.5 + confidence / 2, len(x) - 2) * fit.stderr
    return PowerLawFit(exponent=-fit.slope, ci_low=-fit.slope - half, ci_high=-fit.slope + half,
                       prefactor=math.exp(fit.intercept), r2=fit.rvalue ** 2, n=len(x))


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
                             theory=theory, covered=fit.covers(theory)))
    return pd.DataFrame(rows)


class ScalingLawConfig(NamedSection):
    name: Literal["scaling_law"] = "scaling_law"
    fit_d: tuple[float, float] | None = None  # d range of the memory-limited fit (report)
    fit_T: tuple[float, float] | None = None  # T range of the data-limited fit (report)
    confidence: float = Field(0.95, gt=0, lt=1)


@dataclass
class ScalingLawVerdict(Verdict):
    d: int | None
    T: int | None
    alpha: float | None
    chance: float | None  # error of a uniform guess, 1 - 1/M
    error_trained: float | None
    error_top_k: float | None
    error_seen: float | None
    error_frequency: float | None


@PHENOMENA.register("scaling_law")
class ScalingLaw(Detector):
    """One point of the scaling law: the run's final population errors at its (d, T).

    Detected when the trained memory beats chance (it stored something)."""

    Config = ScalingLawConfig

    def detect(self, metrics: pd.DataFrame, config: ScalingLawConfig, experiment: dict) -> Verdict:
        task, model = experiment.get("task") or {}, experiment.get("model") or {}
        d, T, alpha = model.get("dim"), task.get("n_samples"), task.get("alpha")
        chance = 1 - 1 / task["n_classes"] if task.get("n_classes") else None
        errors = {e: last_value(metrics, "memory/population_error" + ("" if e == "trained"
                                                                        else f"_{e}"))
                  for e in ESTIMATORS}
        trained = errors["trained"]
        detected = trained is not None and trained < (chance if chance is not None else 1.0)
        where = f"d={d}, T={format_step(T)}" if d and T else "this run"
        if trained is None:
            summary = f"{where}: no population error logged (add the memory_recall measurement)"
        else:
            others = ", ".join(f"{e} {v:.4g}" for e, v in errors.items()
                               if e != "trained" and v is not None)
            summary = (f"{where}: population error {trained:.4g} (trained)"
                       + (f"; closed-form {others}" if others else "")
                       + (f" (chance {chance:.3g})" if chance is not None else ""))
        return ScalingLawVerdict(
            phenomenon="scaling_law", detected=bool(detected), summary=summary, d=d, T=T,
            alpha=alpha, chance=chance, **{f"error_{e}": v for e, v in errors.items()})
