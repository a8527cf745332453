"""Progressive sharpening to the edge of stability in a model quadratic in its parameters
(Agarwala, Pedregosa, Pennington 2022). The phenomenon is Cohen et al.'s, so the verdict is the
edge-of-stability one with the same thresholds (phenomena/edge_of_stability): the sharpness
starts below 2/eta, reaches it, stays within the band, and the loss falls. When a plain GD run
logged the top NTK mode (measure/second_order.py), the verdict also carries the two-variable
picture's numbers against the run (reduced.py): who sharpened, whether the map accounts for the
top mode at the edge, and whether the run oscillates on that mode or settled just below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd

from dynamics_lab.phenomena.base import Verdict
from dynamics_lab.phenomena.edge_of_stability import EdgeOfStability, EdgeOfStabilityConfig
from dynamics_lab.phenomena.edge_of_stability.detector import EdgeOfStabilityVerdict
from dynamics_lab.phenomena.eos_quadratic.reduced import edge_numbers, reduced_variables
from dynamics_lab.registry import PHENOMENA


class EosQuadraticConfig(EdgeOfStabilityConfig):
    """The thresholds of the detector it builds on, under this phenomenon's name."""


@dataclass
class EosQuadraticVerdict(EdgeOfStabilityVerdict):
    edge_crossing_step: int | None = None  # first step with eta x top NTK eigenvalue >= 2 reach
    others_share_before_edge: float | None = None  # of the rise before it (picture: ~1)
    map_r2_after_edge: float | None = None  # the map's term against the top mode's own change
    turn_share_after_edge: float | None = None  # the eigenvector turning's part of the push up
    top_mode_loss_share: float | None = None  # median after the crossing


def map_applies(experiment: object) -> bool:
    """Whether a run is plain full-batch GD on the full training set, as the map assumes: no
    weight decay, no step-size schedule, no minibatches, the probe the whole training set."""
    def section(parent: object, key: str) -> dict:
        value = parent.get(key) if isinstance(parent, dict) else None
        return value if isinstance(value, dict) else {}

    optim, trainer, task = (section(experiment, k) for k in ("optim", "trainer", "task"))
    probe = section(section(experiment, "measure"), "second_order").get("probe_size", 1024)
    n_train, batch, lr = task.get("n_train"), trainer.get("batch_size"), optim.get("lr")
    numbers = (n_train, probe, *([] if batch is None else [batch]))
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in numbers):
        return False
    if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and 0 < lr < math.inf):
        return False
    return (optim.get("name") == "gd" and optim.get("weight_decay") in (None, 0, 0.0)
            and not optim.get("warmup_steps") and not optim.get("decay_steps")
            and (batch is None or batch >= n_train) and probe >= n_train)


@PHENOMENA.register("eos_quadratic")
class EosQuadratic(EdgeOfStability):
    """The edge-of-stability detector, plus the two-variable picture's numbers."""

    Config = EosQuadraticConfig
    verdict_type = EosQuadraticVerdict

    def judge(self, metrics: pd.DataFrame, experiment: dict) -> Verdict:
        verdict = super().judge(metrics, experiment)
        if not map_applies(experiment):
            return verdict
        variables = reduced_variables(metrics, float(experiment["optim"]["lr"]))
        if variables is None:
            return verdict
        numbers = edge_numbers(variables, self.config.reach_fraction)
        share = numbers["top_mode_loss_share"]
        if verdict.detected and share is not None:
            how = ("oscillating on the top NTK mode" if share >= 0.5 else
                   "settled just below the edge with the top NTK mode fit")
            numbers["summary"] = f"{verdict.summary}; {how} ({share:.0%} of the loss on it)"
        return replace(verdict, **numbers)

    def figures(self, view) -> list:
        from dynamics_lab.phenomena.eos_quadratic.figures import write_figures

        return write_figures(view)
