"""The eos_quadratic row of results/CLAIMS.md: in a model quadratic in its parameters (nonzero
curvature), does GD's sharpness reach 2/eta and stay at it (oscillating, or settled just below)
once the step size is large enough? The zero-curvature runs are the control (never sharpening)
and are not part of the claim; a step size too small to reach the edge, or a jump to it within
a few steps (a catapult, the other large-step behaviour of this model), does not contradict it.
Read as the edge_of_stability row is."""

from __future__ import annotations

from pathlib import Path

from dynamics_lab.phenomena.claims import Claim
from dynamics_lab.phenomena.edge_of_stability.claim import hover_claim

CLAIM = ("a model quadratic in its parameters (nonzero curvature) sharpens under GD to 2/eta "
         "and stays at it or just below it (Agarwala et al. 2022)")
PAPER = "sharpness / (2/eta) -> 1 (at or slightly below) once the step is large enough"


def claim(results: Path, experiment: dict) -> Claim:
    return hover_claim(results, CLAIM, PAPER, where=lambda t: t["model.curvature"] > 0,
                       every_eta=False)
