"""Stepwise self-supervised learning: the stepwise detector read for a Barlow Twins embedding
(registered as `stepwise_ssl`), the SSL small-init theory of the step times and, on demand, the
figures."""

from dynamics_lab.phenomena.stepwise_ssl.detector import StepwiseSSL, StepwiseSSLConfig
from dynamics_lab.phenomena.stepwise_ssl.theory import (
    initial_strength,
    ssl_half_times,
    theory_for,
)

__all__ = ["StepwiseSSL", "StepwiseSSLConfig", "initial_strength", "ssl_half_times",
           "theory_for"]
