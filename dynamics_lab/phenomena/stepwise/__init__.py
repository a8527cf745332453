"""Stepwise learning: the detector (registered as `stepwise`), the loss-curve staircase, the
small-init theory of the step times and, on demand, the figures."""

from dynamics_lab.phenomena.stepwise.detector import Stepwise, StepwiseConfig, StepwiseVerdict
from dynamics_lab.phenomena.stepwise.plateaus import LossSteps, loss_steps
from dynamics_lab.phenomena.stepwise.theory import (
    initial_strength,
    theory_for,
    theory_half_times,
)

__all__ = ["LossSteps", "Stepwise", "StepwiseConfig", "StepwiseVerdict", "initial_strength",
           "loss_steps", "theory_for", "theory_half_times"]
