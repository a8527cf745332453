"""Models built from a config section and a TaskSpec; each registers under its config name."""

from dynamics_lab.models.linear import DeepLinear
from dynamics_lab.models.linear_encoder import LinearEncoder  # noqa: F401
from dynamics_lab.models.memory import AssociativeMemory
from dynamics_lab.models.mlp import MLP
from dynamics_lab.models.quadratic import QuadraticModel  # noqa: F401
from dynamics_lab.models.transformer import Transformer

__all__ = ["MLP", "AssociativeMemory", "DeepLinear", "Transformer"]
