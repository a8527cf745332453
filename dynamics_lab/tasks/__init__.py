"""Toy tasks: LightningDataModules that build their tensors in memory, resident on the device."""

from dynamics_lab.tasks.base import TaskSpec, TensorTask
from dynamics_lab.tasks.modular_arithmetic import ModularArithmetic

__all__ = ["ModularArithmetic", "TaskSpec", "TensorTask"]
