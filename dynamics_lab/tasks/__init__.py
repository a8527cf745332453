"""Toy tasks: LightningDataModules that build their tensors in memory, resident on the device."""

from dynamics_lab.tasks.base import TaskSpec, TensorTask
from dynamics_lab.tasks.modular_arithmetic import ModularArithmetic
from dynamics_lab.tasks.parity import Parity
from dynamics_lab.tasks.polynomial import Polynomial

__all__ = ["ModularArithmetic", "Parity", "Polynomial", "TaskSpec", "TensorTask"]
from dynamics_lab.tasks.regression import TeacherRegression
from dynamics_lab.tasks.low_rank_regression import LowRankRegression  # noqa: E402
from dynamics_lab.tasks.associative_memory import AssociativeMemoryTask  # noqa: E402
