"""Which picture of the edge a run shows once its sharpness has crossed the threshold.

Cohen et al. 2021 show the sharpness oscillating about 2/eta with a non-monotone loss;
Agarwala et al. 2023's second-order model also has a fixed point just below it, reached with a
monotone loss; a crossing within a few steps of the start is a jump (Lewkowycz et al. 2020's
catapult), not sharpening. The thresholds are the detector's config defaults.
"""

from __future__ import annotations


def picture_of(crossing: float, jump: float | None, above: float | None,
               rises: float | None, c) -> str:
    """"catapult", "settled just below the edge" or "oscillating at the edge" (`c`: the
    EdgeOfStabilityConfig whose catapult_steps and settled_max_* decide)."""
    # A jump: reached within catapult_steps of the start, or with more than half of the rise from
    # the first sample made in the last sampling interval (`jump`: that share).
    if crossing <= c.catapult_steps or (jump is not None and jump > 0.5):
        return "catapult"
    if above is not None and above <= c.settled_max_above and (
            rises is None or rises <= c.settled_max_rises):
        return "settled just below the edge"
    return "oscillating at the edge"
