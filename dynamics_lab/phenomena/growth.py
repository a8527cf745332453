"""How a duration grows with a problem size across a sweep: the exponent b of length ~ size^b,
fitted on log-log axes (a Student-t 95% interval from three sizes on; two sizes give the slope
through them and no interval)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from dynamics_lab.phenomena.power_law import fit_power_law


def growth_exponent(sizes, lengths) -> dict:
    """{exponent, ci_low, ci_high, prefactor, r2, n} of lengths ~ prefactor * sizes^exponent,
    over the positive points (mean over repeats of a size); NaN fields when under two sizes."""
    frame = pd.DataFrame({"x": np.asarray(sizes, float), "y": np.asarray(lengths, float)})
    frame = frame[np.isfinite(frame.x) & np.isfinite(frame.y) & (frame.x > 0) & (frame.y > 0)]
    points = frame.groupby("x")["y"].mean()
    nan = float("nan")
    if len(points) < 2:
        return dict(exponent=nan, ci_low=nan, ci_high=nan, prefactor=nan, r2=nan,
                    n=len(points))
    if len(points) == 2:
        (x0, x1), (y0, y1) = points.index, points.to_numpy()
        slope = math.log(y1 / y0) / math.log(x1 / x0)
        return dict(exponent=slope, ci_low=nan, ci_high=nan, prefactor=y0 / x0**slope, r2=1.0,
                    n=2)
    fit = fit_power_law(points.index, points.to_numpy())
    # fit_power_law fits y ~ x^-exponent (a decay); a growth exponent is its negative.
    return dict(exponent=-fit.exponent, ci_low=-fit.ci_high, ci_high=-fit.ci_low,
                prefactor=fit.prefactor, r2=fit.r2, n=fit.n)


def format_exponent(row: dict) -> str:
    """'0.93 [0.81, 1.05]', or '0.93 (2 sizes)' without an interval."""
    if not math.isfinite(row["exponent"]):
        return "n/a"
    if math.isfinite(row["ci_low"]):
        return f"{row['exponent']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
    return f"{row['exponent']:.2f} ({row['n']} sizes)"
