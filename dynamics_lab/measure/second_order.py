"""SecondOrderModes: the top NTK mode of a squared-loss model and the curvature it sees, the
variables of the two-variable picture of edge-of-stability dynamics in second-order regression
models (Agarwala, Pedregosa, Pennington 2022).

With m residuals r = f(theta) - y over n examples (all outputs), L = ||r||^2 / 2n, Jacobian J
(m x P) and NTK K = J J^T / n: for the top eigenpair (lambda, u) of K, the top mode's residual
zeta = u . r / sqrt(n), its gradient direction j = J^T u / sqrt(n) (||j||^2 = lambda) and the
curvature image q = Q_u j with Q_u = sum_i u_i Hess f_i / sqrt(n). If the residual lay on u alone,
one GD step of size eta on a model quadratic in theta maps exactly
    zeta' = zeta (1 - eta lambda + eta^2 a lambda zeta / 2),   a = j . q / lambda,
    lambda_u' = lambda (1 - 2 eta a zeta + eta^2 b zeta^2),      b = ||q||^2 / lambda,
with lambda_u' = u . K' u (phenomena/eos_quadratic/reduced.py iterates it). Logged per step:
  second_order/ntk_lambda, ntk_lambda_2   the two largest NTK eigenvalues (a cluster at the top
                                          means the top mode can swap)
  second_order/zeta                       the top mode's residual, signed so that zeta >= 0
  second_order/a, second_order/b          the curvature along j and the size of Q_u j
  second_order/loss                       L on the probe (aligned with zeta: the top mode's
                                          share of the loss is zeta^2 / 2L)
Exact: one dense Jacobian (m x P, refused above `max_jacobian_entries`) and one Hessian-vector
product per step; for models whose P or m is in the thousands.
"""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
from pydantic import Field
from torch import Tensor, nn
from typing_extensions import override

from dynamics_lab.linalg.hessian_rank import flat_function
from dynamics_lab.measure.base import (
    Measurement,
    MeasurementConfig,
    measuring,
    model_of,
    to_network,
)
from dynamics_lab.registry import MEASUREMENTS


class SecondOrderModesConfig(MeasurementConfig):
    name: Literal["second_order"] = "second_order"
    every: int = 1  # the two-variable map is a one-step map: compare consecutive steps
    max_jacobian_entries: int = Field(20_000_000, ge=1)  # residuals x parameters held at once


def top_mode(model: nn.Module, batch: tuple[Tensor, Tensor],
             max_jacobian_entries: int | None = None) -> dict[str, float]:
    """The logged quantities (module docstring) at the model's current parameters."""
    x, y = batch
    call, flat = flat_function(model, lambda out: out.reshape(-1))
    with torch.no_grad():
        outputs = call(flat, x)
    n = x.shape[0]
    entries = outputs.numel() * flat.numel()
    if max_jacobian_entries is not None and entries > max_jacobian_entries:
        raise ValueError(f"the Jacobian would hold {outputs.numel()} residuals x {flat.numel()} "
                         f"parameters = {entries:,} entries (max_jacobian_entries="
                         f"{max_jacobian_entries:,}): lower probe_size")
    r = (outputs - y.reshape(-1).to(outputs)).double()
    jac = torch.func.jacrev(call)(flat, x).double()  # (m, P)
    # The smaller Gram matrix: J J^T / n and J^T J / n share their nonzero eigenvalues.
    small_outputs = jac.shape[0] <= jac.shape[1]
    gram = jac @ jac.T if small_outputs else jac.T @ jac
    eigenvalues, vectors = torch.linalg.eigh(gram / n)
    lam = float(eigenvalues[-1])
    lam_2 = float(eigenvalues[-2]) if len(eigenvalues) > 1 else 0.0
    if lam <= 0:
        raise ValueError("the NTK is zero: the model's outputs do not depend on its parameters")
    top = vectors[:, -1]
    coeffs = top / n**0.5 if small_outputs else jac @ top / (n * lam**0.5)  # u / sqrt(n)
    zeta = float(coeffs @ r)
    if zeta < 0:
        coeffs, zeta = -coeffs, -zeta
    j = jac.T @ coeffs

    # Q_u j: the Hessian of u . f / sqrt(n) along j, by double backward (cheaper than jvp(grad)).
    with torch.enable_grad():
        theta = flat.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(call(theta, x) @ coeffs.to(flat), theta, create_graph=True)
        (q,) = torch.autograd.grad(grad @ j.to(flat), theta, allow_unused=True)
    q = torch.zeros_like(j) if q is None else q.double()
    return {"second_order/ntk_lambda": lam, "second_order/ntk_lambda_2": lam_2,
            "second_order/zeta": zeta, "second_order/a": float(j @ q) / lam,
            "second_order/b": float(q @ q) / lam,
            "second_order/loss": float(r @ r) / (2 * n)}


@MEASUREMENTS.register("second_order")
class SecondOrderModes(Measurement):
    """Logs the top NTK mode's eigenvalue, residual and curvature (module docstring)."""

    Config = SecondOrderModesConfig
    prefix = "second_order"
    needs_loss = True
    config: SecondOrderModesConfig

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Refused at setup: a loss other than ||f - y||^2 / 2n (the map holds for it only) and a
        Jacobian too big to hold."""
        super().on_fit_start(trainer, pl_module)
        model = model_of(pl_module)
        if self.probe is None:
            self.probe = self.draw_probe(trainer, pl_module)
        x, y = self.probe = to_network(self.probe, model)
        with measuring(model), torch.no_grad():
            outputs = model(x)
            actual = float(self.loss(pl_module)(outputs, y))
            r = outputs.reshape(-1) - y.reshape(-1).to(outputs) if outputs.numel() == y.numel() \
                else None
        size = outputs.numel() * sum(p.numel() for p in model.parameters() if p.requires_grad)
        if size > self.config.max_jacobian_entries:
            raise ValueError(f"second_order's Jacobian would hold {size:,} entries (max_jacobian_"
                             f"entries={self.config.max_jacobian_entries:,}): lower probe_size")
        expected = None if r is None else float(r.double() @ r.double()) / (2 * len(x))
        if expected is None or abs(actual - expected) > 1e-5 * (1.0 + abs(expected)):
            shown = "targets of another shape" if expected is None else f"{expected:.6g}"
            raise ValueError(f"second_order needs the squared loss ||f - y||^2 / 2n; this "
                             f"model's loss is {actual:.6g} where that gives {shown}")

    @override
    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule,
                model: nn.Module) -> dict[str, float]:
        return top_mode(model, self.probe, self.config.max_jacobian_entries)
