"""Measurement callbacks: drop them into any Lightning Trainer."""

from dynamics_lab.measure.activation_sparsity import ActivationSparsity  # noqa: F401
from dynamics_lab.measure.base import Measurement, MeasurementConfig, Schedule
from dynamics_lab.measure.embedding_spectrum import EmbeddingSpectrum  # noqa: F401
from dynamics_lab.measure.features import FeatureMetrics
from dynamics_lab.measure.fourier_progress import FourierProgress
from dynamics_lab.measure.gradients import GradientStats
from dynamics_lab.measure.hessian import HessianSpectrum
from dynamics_lab.measure.hessian_rank import HessianRank  # noqa: F401
from dynamics_lab.measure.kernel_baseline import KernelBaseline  # noqa: F401
from dynamics_lab.measure.memory_recall import MemoryRecall
from dynamics_lab.measure.modes import Modes
from dynamics_lab.measure.ntk import NTKAlignment
from dynamics_lab.measure.second_order import SecondOrderModes
from dynamics_lab.measure.signal_alignment import SignalAlignment

__all__ = ["FeatureMetrics", "FourierProgress", "GradientStats", "HessianSpectrum", "Measurement",
           "MeasurementConfig", "MemoryRecall", "Modes", "NTKAlignment", "Schedule",
           "SecondOrderModes", "SignalAlignment"]
