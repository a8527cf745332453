"""Edge of stability in second-order regression models: the edge-of-stability detector under its
own name (`eos_quadratic`) and, on demand, figures in the paper's normalized units."""

from dynamics_lab.phenomena.eos_quadratic.detector import EosQuadratic, EosQuadraticConfig

__all__ = ["EosQuadratic", "EosQuadraticConfig"]
