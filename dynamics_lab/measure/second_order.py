"""SecondOrderModes: the top NTK mode of a squared-loss model and the curvature it sees, the
variables of the two-variable picture of edge-of-stability dynamics in second-order regression
models (Agarwala, Pedregosa, Pennington 2022).

With m residuals r = f(theta) - y over n examples (all outputs), L = ||r||^2 / 2n, Jacobian J
(m x P) and NTK K = J J^T / n: for the top eigenpair (lambda, u) of K, the top mode's residual
zeta = u . r / sqrt(n), its gradient direction j = J^T u / sqrt(n) (||j||^2 = lambda) and the
curvature image q = Q_u j with Q_u = sum_i u_i Hess f_i / sqrt(n). One GD step of size eta on a
model quadratic in theta, with the residual's other components set aside, maps exactly
    zeta' = zeta (1 - eta lambda + eta^2 a lambda zeta / 2),   a = j . q / lambda,
    u . K' u = lambda (1 - 2 eta a zeta + eta^2 b zeta^2),       b = ||q||^2 / lambda
(the reduced map of the eos_quadratic phenomenon). Logged per step:
  second_order/ntk_lambda, ntk_lambda_2   the two largest NTK eigenvalues
  second_order/ntk_lambda_prev_mode       u_prev . K u_prev for the previous measurement's top
                                          mode: what the map predicts, before the top mode turns
  second_order/zeta                       the top mode's residual (>= 0: u is signed by it)
  second_order/a, second_order/b          the curvature along j and the size of Q_u j
  second_order/loss                       L on the probe (zeta^2 / 2L: the top mode's share)
When the top eigenvalue is repeated, u is the residual's direction within its eigenspace (the
mode GD sees). Exact: one dense Jacobian (m x P, refused above `max_jacobian_entries`) and one
Hessian-vector product per step; for models whose P or m is in the thousands.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from pydantic import Field
from torch import Tensor, nn
from typing_extensions import override

from dynamics_lab.linalg.chunks import batch_statistics_layers
from dynamics_lab.linalg.hessian_rank import flat_function
from dynamics_lab.measure.base import (
    Measurement,
    MeasurementConfig,
    measuring,
    model_of,
    to_network,
)
from dynamics_lab.metric_names import SecondOrder
from dynamics_lab.registry import MEASUREMENTS

# Eigenvalues within this relative distance of the top one are the top one: rounding's reach in
# float64, floored for models computed in a coarser dtype (see _top_direction).
_REPEATED = 1e-10


class SecondOrderModesConfig(MeasurementConfig):
    every: int = 1  # the two-variable map is a one-step map: compare consecutive steps
    max_jacobian_entries: int = Field(20_000_000, ge=1)  # residuals x parameters held at once


def _top_direction(jac: Tensor, r: Tensor, n: int, eps: float) -> tuple[Tensor, float, float]:
    """u / sqrt(n) for the top NTK eigenvector u (residual space), lambda and lambda_2.

    Eigenvalues within max(_REPEATED, 10 sqrt(m) eps) of the top one (eps: the model dtype's)
    count as one eigenspace, and u is the residual's direction in it. Like any choice of a top
    eigenvector where two eigenvalues meet, u jumps when the gap crosses that tolerance."""
    # The smaller Gram matrix: J J^T / n and J^T J / n share their nonzero eigenvalues.
    small_outputs = jac.shape[0] <= jac.shape[1]
    eigenvalues, vectors = torch.linalg.eigh((jac @ jac.T if small_outputs else jac.T @ jac) / n)
    lam = float(eigenvalues[-1])
    if lam <= 0:
        raise ValueError("the NTK is zero: the model's outputs do not depend on its parameters")
    lam_2 = float(eigenvalues[-2]) if len(eigenvalues) > 1 else 0.0
    top = eigenvalues >= lam * (1 - max(_REPEATED, 10 * jac.shape[0] ** 0.5 * eps))
    basis = vectors[:, top]  # orthonormal eigenvectors of the top eigenvalue
    if not small_outputs:
        basis = jac @ basis / (n * lam) ** 0.5  # to the residual space, still orthonormal
    weights = basis.T @ r
    norm = weights.norm()
    u = basis @ (weights / norm) if norm > 0 else basis[:, -1]
    return u / n**0.5, lam, lam_2


def check_jacobian_size(residuals: int, params: int, limit: int) -> None:
    """Refuse a dense Jacobian of more than `limit` entries, before it is formed."""
    if residuals * params > limit:
        raise ValueError(f"second_order's Jacobian would hold {residuals} residuals x {params} "
                         f"parameters = {residuals * params:,} entries (max_jacobian_entries="
                         f"{limit:,}): lower probe_size")


def top_mode(model: nn.Module, batch: tuple[Tensor, Tensor],
             max_jacobian_entries: int | None = None,
             previous: Tensor | None = None) -> tuple[dict[str, float], Tensor]:
    """The logged quantities (module docstring) and u / sqrt(n), the next call's `previous`."""
    x, y = batch
    call, flat = flat_function(model, lambda out: out.reshape(-1))
    with torch.no_grad():
        outputs = call(flat, x)
    n = x.shape[0]
    if max_jacobian_entries is not None:
        check_jacobian_size(outputs.numel(), flat.numel(), max_jacobian_entries)
    r = (outputs - y.reshape(-1).to(outputs)).double()
    jac = torch.func.jacrev(call)(flat, x).double()  # (m, P)
    coeffs, lam, lam_2 = _top_direction(jac, r, n, torch.finfo(outputs.dtype).eps)
    j = jac.T @ coeffs
    # Q_u j: the Hessian of u . f / sqrt(n) along j, by double backward (cheaper than jvp(grad)).
    with torch.enable_grad():
        theta = flat.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(call(theta, x) @ coeffs.to(flat), theta, create_graph=True)
        q = (torch.autograd.grad(grad @ j.to(flat), theta)[0].double() if grad.requires_grad
             else torch.zeros_like(j))  # outputs linear in theta: no curvature
    metrics = {SecondOrder.NTK_LAMBDA: lam, SecondOrder.NTK_LAMBDA_2: lam_2,
               SecondOrder.ZETA: float(coeffs @ r), SecondOrder.A: float(j @ q) / lam,
               SecondOrder.B: float(q @ q) / lam, SecondOrder.LOSS: float(r @ r) / (2 * n)}
    if previous is not None and previous.shape == coeffs.shape:
        metrics[SecondOrder.NTK_LAMBDA_PREV_MODE] = float((jac.T @ previous.to(jac)).pow(2)
                                                             .sum())
    return metrics, coeffs


@MEASUREMENTS.register("second_order")
class SecondOrderModes(Measurement):
    """Logs the top NTK mode's eigenvalue, residual and curvature (module docstring)."""

    Config = SecondOrderModesConfig
    prefix = SecondOrder.PREFIX
    needs_loss = True
    config: SecondOrderModesConfig

    def __init__(self, config: SecondOrderModesConfig | None = None, /, **kwargs: Any):
        super().__init__(config, **kwargs)
        self.previous: Tensor | None = None  # u / sqrt(n) of the last measured step

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Refused at setup: a loss other than ||f - y||^2 / 2n (the map holds for it only), a
        random or batch-coupled forward, and a Jacobian too big to hold."""
        super().on_fit_start(trainer, pl_module)
        model = model_of(pl_module)
        random = [name or type(m).__name__ for name, m in model.named_modules()
                  if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0]
        coupled = batch_statistics_layers(model)
        if random or coupled:
            raise ValueError("second_order needs a deterministic per-example forward; "
                             f"{', '.join(random + coupled)} "
                             "(dropout / BatchNorm in train mode) make(s) it random or batch-"
                             "coupled")
        if self.probe is None:
            self.probe = self.draw_probe(trainer, pl_module)
        x, y = self.probe = to_network(self.probe, model)
        with measuring(model), torch.no_grad():
            outputs = model(x)
            actual = float(self.loss(pl_module)(outputs, y))
            if not torch.equal(outputs, model(x)):  # noise or dropout inside forward()
                raise ValueError("second_order needs a deterministic forward: two forwards of "
                                 "the probe at the same parameters differ")
            r = outputs.reshape(-1) - y.reshape(-1).to(outputs) if outputs.numel() == y.numel() \
                else None
        check_jacobian_size(outputs.numel(), sum(p.numel() for p in model.parameters()
                                                 if p.requires_grad),
                            self.config.max_jacobian_entries)
        expected = None if r is None else float(r.double() @ r.double()) / (2 * len(x))
        if expected is None or abs(actual - expected) > 1e-5 * (1.0 + abs(expected)):
            shown = "targets of another shape" if expected is None else f"{expected:.6g}"
            raise ValueError(f"second_order needs the squared loss ||f - y||^2 / 2n; this "
                             f"model's loss is {actual:.6g} where that gives {shown}")

    @override
    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule,
                model: nn.Module) -> dict[str, float]:
        metrics, self.previous = top_mode(model, self.probe, self.config.max_jacobian_entries,
                                          self.previous)
        return metrics

    @override
    def state_dict(self) -> dict[str, Any]:
        """The last top mode travels with checkpoints: a resumed run logs the same values."""
        previous = None if self.previous is None else self.previous.detach().cpu()
        return {**super().state_dict(), "previous": previous}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.previous = state_dict.get("previous")
