"""Measurement callbacks: drop them into any Lightning Trainer."""

from dynamics_lab.measure.base import Measurement, MeasurementConfig, Schedule
from dynamics_lab.measure.features import FeatureMetrics
from dynamics_lab.measure.gradients import GradientStats
from dynamics_lab.measure.hessian import HessianSpectrum
from dynamics_lab.measure.memory_recall import MemoryRecall
from dynamics_lab.measure.modes import Modes
from dynamics_lab.measure.ntk import NTKAlignment

__all__ = ["FeatureMetrics", "GradientStats", "HessianSpectrum", "Measurement",
           "MeasurementConfig", "MemoryRecall", "Modes", "NTKAlignment", "Schedule"]
