"""Hessian rank: the detector (registered as `hessian_rank`), the closed-form ranks of deep
linear networks and, on demand, the figures."""

from dynamics_lab.phenomena.hessian_rank.detector import (
    HessianRankVerdict,
    RankDeficiency,
    RankDeficiencyConfig,
)
from dynamics_lab.phenomena.hessian_rank.theory import LinearNetwork, network_from_config

__all__ = ["HessianRankVerdict", "LinearNetwork", "RankDeficiency", "RankDeficiencyConfig",
           "network_from_config"]
