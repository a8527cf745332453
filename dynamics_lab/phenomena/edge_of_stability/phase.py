"""Edge-of-stability phases on a `dynlab phase` map (Cohen et al. 2021):

  stable              the sharpness stays below the stability threshold 2/eta (it levelled off
                      under it within the run)
  edge of stability   the sharpness reached the threshold and training went on, the loss falling
                      over the long run (whether or not the detector saw the progressive
                      sharpening it needs for a positive verdict: the phase is where the run
                      ends up, not how it got there)
  diverged            the loss became non-finite, or grew over the long run at the threshold

A sharpness still rising at the end, or too few samples to say, is undetermined.
"""

from __future__ import annotations

STABLE, EDGE, DIVERGED = "stable", "edge of stability", "diverged"
PHASES = (STABLE, EDGE, DIVERGED)
UNDETERMINED = "undetermined"


def phase_label(verdict: dict, config) -> str:
    """The phase of one run from its verdict (a verdict.json dict) and the detector's Config."""
    outcome = verdict.get("outcome")
    if verdict.get("diverged_step") is not None:
        return DIVERGED
    if verdict.get("crossing_step") is None:
        return STABLE if outcome == "not_detected" else UNDETERMINED
    change, within = verdict.get("loss_change"), verdict.get("fraction_within")
    if change is not None and change >= 1:
        return DIVERGED
    if (outcome == "not_detected" and change is None and within is not None
            and within >= config.min_fraction_within):  # the loss change was non-finite
        return DIVERGED
    return EDGE
