"""Grokking's phases on a `dynlab phase` map, after Liu et al. 2022 ("Towards Understanding
Grokking: An Effective Theory of Representation Learning", fig. 1 and sec. 5):

  comprehension   fits the training set and generalizes about as soon as it fits (val acc
                  already high at the fit, or generalization within the detector's delay bar)
  grokking        fits first, generalizes much later (the detector's positive verdict)
  memorization    fits the training set, never generalizes within the run
  confusion       never fits the training set (or fits it and loses it)

Read from the grokking verdict alone; the thresholds are the detector's (its Config).
"""

from __future__ import annotations

COMPREHENSION, GROKKING, MEMORIZATION, CONFUSION = (
    "comprehension", "grokking", "memorization", "confusion")
PHASES = (COMPREHENSION, GROKKING, MEMORIZATION, CONFUSION)
UNDETERMINED = "undetermined"


def phase_label(verdict: dict, config) -> str:
    """The phase of one run from its verdict (a verdict.json dict) and the detector's Config."""
    outcome = verdict.get("outcome")
    if outcome == "detected":
        return GROKKING
    if outcome != "not_detected":
        return UNDETERMINED
    if verdict.get("fit_step") is None:
        return CONFUSION
    if verdict.get("generalization_step") is not None:  # generalized, too soon to be grokking
        return COMPREHENSION
    final = verdict.get("final_val_acc")
    return COMPREHENSION if final is not None and final >= config.val_threshold else MEMORIZATION
