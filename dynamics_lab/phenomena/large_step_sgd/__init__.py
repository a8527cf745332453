"""SGD with large step sizes learns sparse features: the per-run detector (registered as
`large_step_sgd`), the sweep's comparison of step sizes and, on demand, the figures."""

from dynamics_lab.phenomena.large_step_sgd.compare import LrComparison, compare_learning_rates
from dynamics_lab.phenomena.large_step_sgd.detector import (
    LargeStepSGD,
    LargeStepSGDConfig,
    LargeStepSGDVerdict,
)

__all__ = ["LargeStepSGD", "LargeStepSGDConfig", "LargeStepSGDVerdict", "LrComparison",
           "compare_learning_rates"]
