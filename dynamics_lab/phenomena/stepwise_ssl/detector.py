"""Stepwise self-supervised learning (Simon et al. 2023): from small init, a Barlow Twins encoder
learns the eigenmodes of the views' cross-correlation one at a time, strongest first, each
embedding eigenvalue stepping from ~0 to 1 in a sigmoidal rise after a plateau.

The stepwise detector (phenomena/stepwise/) judges the rises unchanged; this subclass supplies
what differs from supervised stepwise learning:
  curves    `modes/strength_j` (measure/embedding_spectrum.py), strongest mode first; without
            them the embedding's own eigenvalues `embedding/eig_i`, which step the same way
  targets   1 for every mode: a learned mode is an eigenvalue 1 of the cross-correlation C
  order     modes are indexed by decreasing eigenvalue, so in order means by index
  theory    the SSL step times of theory.py beside the observed ones (`theory_times`,
            `theory_ratio`), and in the summary
"""

from __future__ import annotations

import pandas as pd

from dynamics_lab.metric_names import Embedding
from dynamics_lab.phenomena.base import NONNEGATIVE, Verdict
from dynamics_lab.phenomena.dashboard import SWEPT, Panel
from dynamics_lab.phenomena.stepwise.detector import (
    LOSSES,
    STRENGTH,
    Stepwise,
    StepwiseConfig,
    mode_columns,
)
from dynamics_lab.phenomena.stepwise.detector import _fmt as format_times
from dynamics_lab.phenomena.stepwise_ssl.theory import theory_for
from dynamics_lab.registry import PHENOMENA

EIG = Embedding.EIGENVALUE
# The stepwise summary's order clause (its targets are all equal here) and what it means here.
ORDER_TEXT = ("in order of decreasing s", "out of order of s")


class StepwiseSSLConfig(StepwiseConfig):
    """The thresholds of the detector it builds on, under this phenomenon's name."""


@PHENOMENA.register("stepwise_ssl")
class StepwiseSSL(Stepwise):
    """Detected when >= 2 eigenmodes of the embedding are learned in separate, sigmoidal rises."""

    Config = StepwiseSSLConfig
    field_ranges = {**Stepwise.field_ranges, "theory_ratio": NONNEGATIVE}
    panels = (
        Panel("mode strengths gamma_j |W v_j|^2", y=(STRENGTH + "*",), group_by=(SWEPT,)),
        Panel("eigenvalues of the embedding cross-correlation", y=(EIG + "*",)),
        Panel("Barlow Twins loss: plateaus and drops", y=LOSSES, log_y=True),
    )

    @property
    def interval_fields(self) -> tuple[str, ...]:
        return ("step_times", "theory_ratio")

    def required(self, experiment: dict) -> list:
        return [(STRENGTH + "0", EIG + "0", *LOSSES)]

    @staticmethod
    def _targets(metrics: pd.DataFrame, columns: list[str], experiment: dict) -> list[float]:
        return [1.0] * len(columns)

    def judge(self, metrics: pd.DataFrame, experiment: dict) -> Verdict:
        if not mode_columns(metrics, STRENGTH):
            eigs = mode_columns(metrics, EIG)
            metrics = metrics.assign(**{STRENGTH + c[len(EIG):]: metrics[c] for c in eigs})
        verdict = super().judge(metrics, experiment)
        if verdict.step_times is None:
            return verdict
        theory, label = theory_for(experiment)
        n = len(verdict.step_times)
        theory = None if theory is None else (theory + [None] * n)[:n]
        verdict.theory, verdict.theory_times = label, theory
        verdict.theory_ratio = None if theory is None else [
            t / p if t is not None and p else None for t, p in zip(verdict.step_times, theory)]
        verdict.in_order = verdict.order == sorted(verdict.order or [])
        verdict.summary = self._summary(verdict)
        return verdict

    @staticmethod
    def _summary(verdict) -> str:
        """The stepwise summary with the theory after the observed times and the order clause
        read by eigenvalue."""
        summary = verdict.summary
        if verdict.theory_times is not None:
            observed = format_times(verdict.step_times)
            summary = summary.replace(observed, f"{observed} (theory "
                                      f"{format_times(verdict.theory_times)})", 1)
        order = "strongest mode first" if verdict.in_order else "out of eigenvalue order"
        for text in ORDER_TEXT:
            summary = summary.replace(text, order)
        return summary

    def figures(self, view) -> list:
        from dynamics_lab.phenomena.stepwise_ssl.figures import write_figures

        return write_figures(view)
