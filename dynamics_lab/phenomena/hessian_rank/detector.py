"""Rank deficiency of the loss Hessian (Singh et al. 2021): the Hessian of a deep linear network
has far fewer nonzero eigenvalues than parameters, exactly as many as a closed-form function of
the layer widths predicts (theory.py).

Reads `hessian_rank/rank` (with `rank_stderr` and `exact`, from measure/hessian_rank.py) and
`hessian_rank/n_params`; the prediction comes from the config (task widths, model depth and width,
probe size).
  match          an exact count equals the formula (`atol` eigenvalues of slack); an SLQ estimate
                 is within max(slq_rtol x formula, n_sigma x its standard error)
  matched        at least min_fraction_matched of the measurements match
  deficient      the predicted rank is at most max_rank_fraction of the parameters: a formula that
                 predicts (nearly) full rank leaves nothing to detect
Undetermined: no rank logged; no closed form for the model; the logged parameter count is not the
network's (a bias, a frozen layer: the formula would be about another model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import Field

from dynamics_lab.metric_names import HessianRank
from dynamics_lab.phenomena.base import FRACTION, NONNEGATIVE, Detector, Outcome, Verdict
from dynamics_lab.phenomena.curves import series
from dynamics_lab.phenomena.dashboard import SWEPT, KeyMetric, Panel, swept_key, verdict_key
from dynamics_lab.phenomena.hessian_rank.theory import network_from_config
from dynamics_lab.registry import PHENOMENA
from dynamics_lab.schema import NamedSection

RANK, N_PARAMS = HessianRank.RANK, HessianRank.N_PARAMS
STDERR, EXACT, OUTER = HessianRank.RANK_STDERR, HessianRank.EXACT, HessianRank.OUTER_RANK


class RankDeficiencyConfig(NamedSection):
    atol: int = Field(0, ge=0)  # eigenvalues an exact count may differ from the formula by
    slq_rtol: float = Field(0.03, ge=0)  # relative slack for SLQ estimates (their bias)
    n_sigma: float = Field(3.0, ge=0)  # and this many standard errors
    min_fraction_matched: float = Field(1.0, gt=0, le=1)
    max_rank_fraction: float = Field(0.9, gt=0, le=1)  # "rank-deficient" = at most this


@dataclass
class HessianRankVerdict(Verdict):
    predicted_rank: int | None = None
    measured_rank: float | None = None  # median over the measurements
    n_params: int | None = None
    rank_fraction: float | None = None  # measured rank / parameters
    predicted_fraction: float | None = None
    max_abs_error: float | None = None  # max |measured - predicted| over the measurements
    matched_fraction: float | None = None
    n_measurements: int = 0
    exact: bool | None = None  # every measurement an exact (dense) count
    predicted_outer_rank: int | None = None
    measured_outer_rank: float | None = None
    widths: list | None = None  # [M_0 (input rank), ..., M_L]


@PHENOMENA.register("hessian_rank")
class RankDeficiency(Detector):
    """The measured Hessian rank equals the closed form and is far below the parameter count."""

    Config = RankDeficiencyConfig
    verdict_type = HessianRankVerdict
    key_metric = KeyMetric("max_abs_error", "minimize")
    field_ranges = {"measured_rank": NONNEGATIVE, "predicted_rank": NONNEGATIVE,
                    "rank_fraction": FRACTION, "max_abs_error": NONNEGATIVE}
    panels = (
        Panel("Hessian rank / parameters", y=(HessianRank.RANK_FRACTION,), group_by=(SWEPT,)),
        Panel("measured vs predicted Hessian rank", y=(verdict_key("measured_rank"),),
              x=verdict_key("predicted_rank"), kind="scatter", color=swept_key(0)),
    )

    @property
    def interval_fields(self) -> tuple[str, ...]:
        return ("measured_rank", "predicted_rank", "rank_fraction")

    def required(self, experiment: dict) -> list:
        return [RANK, N_PARAMS]

    def judge(self, metrics: pd.DataFrame, experiment: dict) -> Verdict:
        c = self.config
        network, why = network_from_config(experiment)
        if network is None:
            return self.undetermined(why)
        steps, ranks = series(metrics, RANK)
        logged = int(series(metrics, N_PARAMS)[1][-1])
        stderr = _aligned(metrics, steps, STDERR, 0.0)
        exact = _aligned(metrics, steps, EXACT, 1.0) > 0.5
        predicted = network.hessian_rank
        _, outer = series(metrics, OUTER)
        fields = dict(predicted_rank=predicted, n_params=logged, widths=list(network.widths),
                      predicted_fraction=predicted / logged, n_measurements=len(ranks),
                      measured_rank=float(np.median(ranks)), exact=bool(exact.all()),
                      rank_fraction=float(np.median(ranks)) / logged,
                      predicted_outer_rank=network.outer_rank,
                      measured_outer_rank=float(np.median(outer)) if len(outer) else None)
        if logged != network.n_params:
            return self.undetermined(f"{logged} parameters logged, but the deep linear network "
                                     f"{network.widths} has {network.n_params}", **fields)
        error = np.abs(ranks - predicted)
        slack = np.where(exact, c.atol, np.maximum(c.slq_rtol * predicted, c.n_sigma * stderr))
        matched = float((error <= slack).mean())
        fields.update(max_abs_error=float(error.max()), matched_fraction=matched)
        counted = "counted" if exact.all() else "estimated (SLQ)"
        at = f"{fields['measured_rank']:.6g} of {logged} parameters"
        if matched < c.min_fraction_matched:
            return self.verdict(
                Outcome.NOT_DETECTED,
                f"measured rank {at} differs from the formula's {predicted} at "
                f"{1 - matched:.0%} of {len(ranks)} measurements (max error {error.max():.3g})",
                f"Hessian rank {at}, not the formula's {predicted}", **fields)
        if predicted / logged > c.max_rank_fraction:
            return self.verdict(
                Outcome.NOT_DETECTED,
                f"rank {at} matches the formula, which predicts no deficiency "
                f"({predicted / logged:.0%} > {c.max_rank_fraction:.0%} of the parameters)",
                f"Hessian (nearly) full rank: {at}, as predicted", **fields)
        return self.verdict(
            Outcome.DETECTED,
            f"rank {counted} {at} ({predicted / logged:.0%}) equals the formula's {predicted} "
            f"at {matched:.0%} of {len(ranks)} measurements",
            f"Hessian rank {at} ({fields['rank_fraction']:.0%}), formula {predicted}", **fields)

    def figures(self, view) -> list:
        from dynamics_lab.phenomena.hessian_rank.figures import write_figures

        return write_figures(view)


def _aligned(metrics: pd.DataFrame, steps: np.ndarray, column: str, default: float) -> np.ndarray:
    """`column` at the steps where the rank was logged (`default` where it was not)."""
    if column not in metrics:
        return np.full(len(steps), default)
    values = metrics.groupby("step")[column].last().reindex(steps).to_numpy(float)
    return np.where(np.isfinite(values), values, default)
