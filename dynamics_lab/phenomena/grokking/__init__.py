"""Grokking: its detector (registered as `grokking`) and, imported on demand, its figures."""

from dynamics_lab.phenomena.grokking.detector import Grokking, GrokkingConfig, GrokkingVerdict

__all__ = ["Grokking", "GrokkingConfig", "GrokkingVerdict"]
