"""How large a sharpness an optimizer's step survives: its stability threshold on a quadratic,
and the diagonal preconditioner whose product with the Hessian the threshold applies to.

Every optimizer here takes steps w <- w - eta S m, where m is the gradient or a momentum buffer
of gradients, eta the first parameter group's learning rate and S a positive diagonal (the other
groups' learning rates relative to eta, Adam's 1/((1 - beta1^t)(sqrt(v_hat) + eps))). On a
quadratic with Hessian H it is stable while lambda_max(S (H + L2)) < threshold, L2 the coupled
weight decay that enters the gradient. The thresholds themselves (2/eta for SGD,
(2 + 2 beta1)/((1 - beta1) eta) for Adam/AdamW, ...) are written once, in
dynamics_lab/thresholds.py; here,
  Adam/AdamW   S = 1/P for Adam's preconditioner
               P = (1 - beta1^t) (sqrt(v_t / (1 - beta2^t)) + eps) (Cohen et al. 2022, "Adaptive
               gradient methods at the edge of stability": lambda_1(P^-1 H) against 38/eta for
               beta1 = 0.9). torch's Adam step is lr m_t / P exactly, with m_t the biased EMA;
               P is read from the optimizer state after t updates, the preconditioner of the
               last step (the next one differs by one more EMA update).
Weight decay: coupled L2 (SGD's and Adam's `weight_decay`) is part of the gradient, so it is in
L2 above and in the preconditioned sharpness. AdamW's decoupled decay (and Adam's
`decoupled_weight_decay=True`) shrinks w by (1 - eta wd) outside the preconditioner, a
contraction that can only make the step more stable; it is left out. The plain sharpness
lambda_max(H) compared with 2/eta is that of the loss alone.
Parameter groups may differ in learning rate (folded into S), Adam's beta2 and eps (in P) and
weight decay (in L2); a momentum or beta1 that differs between groups has no single threshold
and is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dynamics_lab.thresholds import stability_threshold


@dataclass
class Stability:
    """The threshold, and the operator S (H + L2) it applies to (S = I, L2 = 0 when None)."""

    threshold: float
    scale: Tensor | None = None  # flat diag S over the measured parameters
    l2: Tensor | None = None  # flat coupled weight decay over the measured parameters


def unwrap(optimizer: Any) -> Any:
    """The torch optimizer inside a LightningOptimizer (or the optimizer itself)."""
    return getattr(optimizer, "_optimizer", optimizer)


def is_adam(optimizer: Any) -> bool:
    return isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW))


def _shared(groups: list[dict], key: str, kind: str) -> Any:
    """The value of `key` every group shares; a clear error when the groups disagree."""
    values = {repr(g.get(key)) for g in groups}
    if len(values) > 1:
        raise ValueError(f"{kind} parameter groups differ in {key} ({', '.join(sorted(values))}):"
                         " no single stability threshold applies; use one value for all groups")
    return groups[0].get(key)


def threshold_of(optimizer: Any) -> float | None:
    """Largest stable preconditioned sharpness for SGD- and Adam-family optimizers, else None."""
    groups = optimizer.param_groups
    lr = float(groups[0]["lr"])
    if is_adam(optimizer):
        beta1 = float(_shared([{"beta1": float(g["betas"][0])} for g in groups], "beta1", "Adam"))
        return stability_threshold(lr, adam_beta1=beta1)
    if isinstance(optimizer, torch.optim.SGD):
        beta = float(_shared(groups, "momentum", "SGD") or 0.0)
        if beta == 0:
            return stability_threshold(lr)
        return stability_threshold(lr, momentum=beta,
                                   nesterov=bool(_shared(groups, "nesterov", "SGD")),
                                   dampening=float(_shared(groups, "dampening", "SGD") or 0.0))
    return None


def _coupled_decay(optimizer: Any, group: dict) -> float:
    decoupled = isinstance(optimizer, torch.optim.AdamW) or group.get("decoupled_weight_decay")
    return 0.0 if decoupled else float(group.get("weight_decay") or 0.0)


def _adam_scale(group: dict, state: dict) -> Tensor | None:
    """1 / ((1 - beta1^t)(sqrt(v_hat) + eps)) for one parameter; None before its first step."""
    if "exp_avg_sq" not in state:
        return None
    beta1, beta2 = (float(b) for b in group["betas"])
    t = float(state["step"])
    v = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
    return 1 / ((1 - beta1**t) * ((v / (1 - beta2**t)).sqrt() + float(group["eps"])))


def stability(optimizer: Any, params: list[Tensor]) -> Stability | None:
    """Threshold, S and L2 over `params` (flat, in order); None for other optimizers.

    S is None for SGD whose groups share one learning rate and have no coupled weight decay
    (then lambda_max(H) is compared with the threshold directly) and for Adam before its first
    step. Parameters outside every group do not move, nor do those Adam has never stepped (no
    gradient yet) once others have been: their S is 0.
    """
    optimizer = unwrap(optimizer)
    threshold = threshold_of(optimizer)
    if threshold is None:
        return None
    if any(g.get("maximize") for g in optimizer.param_groups):
        raise ValueError("maximize=True: the stability threshold is for minimization")
    lr = float(optimizer.param_groups[0]["lr"])
    group_of = {p: g for g in optimizer.param_groups for p in g["params"]}
    adam = is_adam(optimizer)
    if adam and not any(_adam_scale(g, optimizer.state.get(p) or {}) is not None
                        for g in optimizer.param_groups for p in g["params"]):
        return Stability(threshold)  # before the first step: no preconditioner yet
    scales, l2s = [], []
    for p in params:
        group = group_of.get(p)
        precond = _adam_scale(group, optimizer.state.get(p) or {}) if adam and group else None
        if group is None or (adam and precond is None):
            scales.append(torch.zeros_like(p).reshape(-1))
            l2s.append(torch.zeros_like(p).reshape(-1))
            continue
        scale = torch.full_like(p, float(group["lr"]) / lr)
        if adam:
            scale = scale * precond.to(p.dtype)
        scales.append(scale.reshape(-1))
        l2s.append(torch.full_like(p, _coupled_decay(optimizer, group)).reshape(-1))
    scale, l2 = torch.cat(scales), torch.cat(l2s)
    if not adam and bool((scale == 1).all()) and not bool(l2.any()):
        return Stability(threshold)
    return Stability(threshold, scale, l2 if bool(l2.any()) else None)


def preconditioned(found: Stability, apply: Callable[[Tensor], Tensor], dtype: torch.dtype,
                   device: torch.device) -> Callable[[Tensor], Tensor]:
    """u -> S^1/2 (H + L2) S^1/2 u, whose spectrum is that of S (H + L2), for a flat vector or
    a block of columns; `apply` gives H u (or H U) and `found` has S (`scale`)."""
    root = found.scale.to(device, dtype).sqrt()
    l2 = None if found.l2 is None else found.l2.to(device, dtype)

    def operator(u: Tensor) -> Tensor:
        shape = (-1,) if u.dim() == 1 else (-1, 1)
        r = root.reshape(shape)
        w = r * u
        return r * (apply(w) if l2 is None else apply(w) + l2.reshape(shape) * w)

    return operator
