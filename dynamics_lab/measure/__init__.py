"""Measurement callbacks: drop them into any Lightning Trainer."""

from dynamics_lab.measure.base import Measurement, MeasurementConfig, Schedule
from dynamics_lab.measure.gradients import GradientStats
from dynamics_lab.measure.hessian import HessianSpectrum
from dynamics_lab.measure.ntk import NTKAlignment
from dynamics_lab.measure.features import FeatureMetrics
from dynamics_lab.measure.modes import Modes  # noqa: E402
from dynamics_lab.measure.memory_recall import MemoryRecall  # noqa: E402
