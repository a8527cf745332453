"""HessianRank: the numerical rank of the loss Hessian on a fixed probe set, and the rank of the
output Jacobian behind its Gauss-Newton (outer-product) part, as a Lightning callback.

Logged under `hessian_rank/`: `rank` (eigenvalues above `rtol` x the largest magnitude),
`rank_stderr` (0 when exact), `n_params`, `rank_fraction` (rank / n_params), `exact` (1 for the
dense count, 0 for the SLQ estimate), `lambda_abs_max`; for the dense count `smallest_kept` and
`largest_dropped` (magnitudes over the largest: the gap the tolerance sits in); with `outer`,
`outer_rank`, the rank of d outputs / d params on the probe, which is the rank of the Gauss-Newton
matrix J^T J for the squared loss (Singh et al. 2021's outer-product Hessian).

`method: auto` counts exactly (dense Hessian via torch.func.hessian, eigvalsh) up to
`max_dense_params` parameters and estimates by SLQ above (linalg/hessian_rank.py). The model is
measured in float64 (a copy, when it trains in float32): a rank needs a wide gap between the
smallest kept and the largest dropped eigenvalue, and float32 round-off (~1e-7 relative) fills
the gap the dense count relies on.
"""

from __future__ import annotations

import copy
from typing import Literal

import lightning as L
import torch
from pydantic import Field
from torch import nn
from typing_extensions import override

from dynamics_lab.linalg.hessian_rank import (
    RankEstimate,
    dense_hessian,
    dense_rank,
    matrix_rank,
    output_jacobian,
    slq_rank,
)
from dynamics_lab.linalg.hvp import hessian_vector_product
from dynamics_lab.measure.base import Measurement, MeasurementConfig
from dynamics_lab.metric_names import HessianRank as RankNames
from dynamics_lab.registry import MEASUREMENTS


class HessianRankConfig(MeasurementConfig):
    method: Literal["auto", "dense", "slq"] = "auto"
    max_dense_params: int = Field(4096, ge=1)  # auto: dense up to this many parameters
    rtol: float = Field(1e-8, gt=0, lt=1)  # dense: kept = |lambda| > rtol * max |lambda|
    slq_rtol: float = Field(1e-3, gt=0, lt=1)  # SLQ resolves zero more coarsely (linalg doc)
    slq_draws: int = Field(10, ge=2)
    slq_iter: int = Field(200, ge=2)
    outer: bool = True  # also the output-Jacobian rank (dense parameter counts only)
    float64: bool = True  # measure a float64 copy of a float32 model


@MEASUREMENTS.register("hessian_rank")
class HessianRank(Measurement):
    """Rank of the loss Hessian (exact or SLQ) and of the output Jacobian, on the probe set.

    Example:
        >>> callback = HessianRank(every=50, method="dense")
        >>> trainer = L.Trainer(callbacks=[callback])
    """

    Config = HessianRankConfig
    prefix = RankNames.PREFIX
    needs_loss = True
    config: HessianRankConfig

    @override
    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule,
                model: nn.Module) -> dict[str, float]:
        c = self.config
        x, y = self.probe
        if c.float64 and next(model.parameters()).dtype != torch.float64:
            model = copy.deepcopy(model).double()
            x = x.double() if x.is_floating_point() else x
            y = y.double() if y.is_floating_point() else y
        n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        dense = c.method == "dense" or (c.method == "auto" and n_params <= c.max_dense_params)
        loss_fn = self.loss(pl_module)
        if dense:
            estimate = dense_rank(dense_hessian(model, loss_fn, (x, y), seed=c.probe_seed),
                                  c.rtol)
        else:
            estimate = self._slq(model, loss_fn, (x, y), trainer.global_step)
        metrics = rank_metrics(estimate, n_params, dense)
        if c.outer and dense:
            metrics[RankNames.OUTER_RANK] = float(
                matrix_rank(output_jacobian(model, x), c.rtol).rank)
        return metrics

    def _slq(self, model: nn.Module, loss_fn, batch, step: int) -> RankEstimate:
        c = self.config
        # Seeded by step, like HessianSpectrum: reproducible and resumable.
        generator = torch.Generator().manual_seed(c.probe_seed * 1_000_003 + step)
        with hessian_vector_product(model, loss_fn, batch, seed=c.probe_seed) as hvp:
            return slq_rank(hvp, hvp.dim, n_draws=c.slq_draws, n_iter=c.slq_iter,
                            rtol=c.slq_rtol, generator=generator, dtype=hvp.dtype,
                            device=hvp.device)


def rank_metrics(estimate: RankEstimate, n_params: int, exact: bool) -> dict[str, float]:
    metrics = {RankNames.RANK: float(estimate.rank),
               RankNames.RANK_STDERR: float(estimate.stderr),
               RankNames.N_PARAMS: float(n_params),
               RankNames.RANK_FRACTION: float(estimate.rank) / n_params,
               RankNames.EXACT: float(exact),
               RankNames.LAMBDA_ABS_MAX: estimate.scale}
    if estimate.smallest_kept is not None:
        metrics[RankNames.SMALLEST_KEPT] = estimate.smallest_kept
    if estimate.largest_dropped is not None:
        metrics[RankNames.LARGEST_DROPPED] = estimate.largest_dropped
    return metrics
