"""Toy tasks: LightningDataModules that build their tensors in memory, resident on the device."""

from dynamics_lab.tasks.associative_memory import AssociativeMemoryTask
from dynamics_lab.tasks.augmented_pairs import AugmentedPairs  # noqa: F401
from dynamics_lab.tasks.base import TaskSpec, TensorTask
from dynamics_lab.tasks.low_rank_regression import LowRankRegression
from dynamics_lab.tasks.modular_arithmetic import ModularArithmetic
from dynamics_lab.tasks.parity import Parity
from dynamics_lab.tasks.polynomial import Polynomial
from dynamics_lab.tasks.regression import TeacherRegression
from dynamics_lab.tasks.relu_teacher import ReluTeacher  # noqa: F401

__all__ = ["AssociativeMemoryTask", "LowRankRegression", "ModularArithmetic", "Parity",
           "Polynomial", "TaskSpec", "TeacherRegression", "TensorTask"]
