"""Edge of stability: its detector (registered as `edge_of_stability`) and, on demand, figures."""

from dynamics_lab.phenomena.edge_of_stability.detector import (
    EdgeOfStability,
    EdgeOfStabilityConfig,
    EdgeOfStabilityVerdict,
    threshold_from_config,
)

__all__ = ["EdgeOfStability", "EdgeOfStabilityConfig", "EdgeOfStabilityVerdict",
           "threshold_from_config"]
