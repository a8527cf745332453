"""Progressive sharpening to the edge of stability in a model quadratic in its parameters
(Agarwala, Pedregosa, Pennington 2022). The phenomenon is Cohen et al.'s, so the verdict is the
edge-of-stability one with the same thresholds (phenomena/edge_of_stability): the sharpness
starts below 2/eta, reaches it, stays within the band, and the loss falls. When the run logged
the top NTK mode (measure/second_order.py), the verdict also carries the two-variable picture's
numbers against the run (reduced.py): who sharpened, who held the edge, who carries the loss.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import pandas as pd

from dynamics_lab.phenomena.base import Verdict
from dynamics_lab.phenomena.edge_of_stability import EdgeOfStability, EdgeOfStabilityConfig
from dynamics_lab.phenomena.edge_of_stability.detector import EdgeOfStabilityVerdict
from dynamics_lab.phenomena.eos_quadratic.reduced import edge_numbers, reduced_variables
from dynamics_lab.registry import PHENOMENA


class EosQuadraticConfig(EdgeOfStabilityConfig):
    name: Literal["eos_quadratic"] = "eos_quadratic"  # type: ignore[assignment]


@dataclass
class EosQuadraticVerdict(EdgeOfStabilityVerdict):
    drive_share_before_edge: float | None = None  # of the rise before the crossing (theory: 1)
    top_pull_vs_drive: float | None = None  # after the crossing (theory: 1, the edge holds)
    top_mode_loss_share: float | None = None  # median after the crossing


@PHENOMENA.register("eos_quadratic")
class EosQuadratic(EdgeOfStability):
    """The edge-of-stability detector, plus the two-variable picture's numbers."""

    Config = EosQuadraticConfig
    verdict_type = EosQuadraticVerdict

    def judge(self, metrics: pd.DataFrame, experiment: dict) -> Verdict:
        verdict = super().judge(metrics, experiment)
        optim = experiment.get("optim") if isinstance(experiment.get("optim"), dict) else {}
        try:
            lr = float(optim.get("lr") or 0)
        except (TypeError, ValueError):
            lr = 0.0
        if optim.get("name") != "gd" or not lr > 0:
            return verdict  # the map is plain GD's
        variables = reduced_variables(metrics, lr)
        if variables is None:
            return verdict
        return replace(verdict, **edge_numbers(variables, verdict.crossing_step))

    def figures(self, view) -> list:
        from dynamics_lab.phenomena.eos_quadratic.figures import write_figures

        return write_figures(view)
