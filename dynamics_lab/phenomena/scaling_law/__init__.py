"""Associative-memory scaling laws: the per-run detector (registered as `scaling_law`), the
sweep's power-law fits and, on demand, the figures."""

from dynamics_lab.phenomena.scaling_law.detector import (
    ScalingLaw,
    ScalingLawConfig,
    ScalingLawVerdict,
)
from dynamics_lab.phenomena.scaling_law.fits import (
    ESTIMATORS,
    FITTED,
    PowerLawFit,
    fit_power_law,
    scaling_fits,
    theory_exponent,
)

__all__ = ["ESTIMATORS", "FITTED", "PowerLawFit", "ScalingLaw", "ScalingLawConfig",
           "ScalingLawVerdict", "fit_power_law", "scaling_fits", "theory_exponent"]
