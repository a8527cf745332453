"""Progressive sharpening to the edge of stability in a model quadratic in its parameters
(Agarwala, Pedregosa, Pennington 2022). The phenomenon is Cohen et al.'s, so the detector is the
edge-of-stability one with the same thresholds and verdict (phenomena/edge_of_stability): the
sharpness starts below 2/eta, reaches it, stays within the band, and the loss falls. Registered
under the experiment's name so that `dynlab run eos_quadratic` reports with its own figures.
"""

from __future__ import annotations

from typing import Literal

from dynamics_lab.phenomena.edge_of_stability import EdgeOfStability, EdgeOfStabilityConfig
from dynamics_lab.registry import PHENOMENA


class EosQuadraticConfig(EdgeOfStabilityConfig):
    name: Literal["eos_quadratic"] = "eos_quadratic"  # type: ignore[assignment]


@PHENOMENA.register("eos_quadratic")
class EosQuadratic(EdgeOfStability):
    """The edge-of-stability detector, judging second-order regression runs."""

    Config = EosQuadraticConfig

    def figures(self, view) -> list:
        from dynamics_lab.phenomena.eos_quadratic.figures import write_figures

        return write_figures(view)
