"""Small-init theory of stepwise learning in deep linear networks (Saxe et al. 2014): when each
teacher mode is half-learned.

Setting: W = W_D ... W_1, white inputs, loss 0.5 ||W - W*||_F^2, so gradient flow runs in
tau = lr * step. A teacher mode (u, s, v) is learned by a path v -> ... -> u through the layers.
In a balanced network each layer carries the mode with the same amplitude a, the mode strength is
m = a^D (the product of the D per-layer singular values) and, ignoring the other modes,
    dm/dtau = D m^(2 - 2/D) (s - m).
For D = 2 this is the logistic m(tau) = s / (1 + (s/m0 - 1) exp(-2 s tau)), half-way at
tau = ln(s/m0 - 1) / (2 s); gradient descent multiplies the growing amplitude by (1 + lr s) per
step rather than exp(lr s), so in steps t_half = ln(s/m0 - 1) / (2 ln(1 + lr s)), exact in the
exponential phase. For D >= 3 the ODE is integrated numerically (flow time / lr).

Initial strength m0 (models/linear.py: every entry N(0, u0^2 / width)): m0 is the product of the
initial per-layer projections of the mode. A hidden (width x width) layer maps any unit vector to
norm u0, so each carries gain u0. The two end layers project the mode onto a0 = W_D^T u and
b0 = W_1 v, independent random vectors of norm u0; only their balanced part (a0 + b0)/2 grows
(for D = 2, a + b grows as exp(s tau) and a - b decays), with |a0 + b0|^2 / 4 = u0^2 / 2 on
average. So m0 = (u0^2 / 2) u0^(D-2) = u0^D / 2. Checked against simulated deep linear networks
(tests/test_stepwise.py): for depth 2 and 3 the seed-averaged half-times agree within ~5%.
With two or more hidden layers the random init offers more than one gain-u0 path (the growing
mode aligns with the product's larger singular directions), so the effective m0 is larger:
depth 4 runs ~14% and depth 5 ~22% earlier than u0^D / 2 predicts. There the factor is a fit to
simulations (FITTED_INIT, widths 16-128, u0 0.05-0.2) and the theory is labelled as such; no
prediction beyond depth 5. Single runs scatter ~5-10% around the average (random init norms).

Depth 1: every mode is half-learned at ln 2 / -ln(1 - lr), all at once: no steps. No prediction
is made for a mode whose m0 exceeds s / 10: the init is not small for it.
"""

from __future__ import annotations

import math

# depth -> factor on u0^depth / 2, fitted to simulated networks (module docstring)
FITTED_INIT = {4: 1.35, 5: 1.5}
MAX_DEPTH = 5


def initial_strength(init_scale: float, depth: int) -> float:
    """The effective initial mode strength: u0^depth / 2, times FITTED_INIT for depth >= 4."""
    return FITTED_INIT.get(depth, 1.0) * init_scale ** depth / 2


def theory_half_times(singular_values: list[float], lr: float, init_scale: float,
                      depth: int) -> list[float | None]:
    """Predicted step of each mode's half-way point (module docstring).

    None where the init is not small for that mode (m0 > s / 10): there is no plateau to predict.
    """
    from scipy.integrate import quad  # here, not at the top: runs of other phenomena skip scipy

    out: list[float | None] = []
    m0 = initial_strength(init_scale, depth)
    for s in singular_values:
        if depth > MAX_DEPTH:
            out.append(None)
        elif depth == 1:
            out.append(math.log(2) / -math.log(1 - lr) if lr < 1 else None)
        elif m0 > s / 10:
            out.append(None)
        elif depth == 2:
            out.append(math.log(s / m0 - 1) / (2 * math.log1p(lr * s)))
        else:
            # In z = ln m the integrand is smooth: dtau = m^(2/D - 1) / (D (s - m)) dz.
            def rate(z: float, s: float = s) -> float:
                m = math.exp(z)
                return m ** (2 / depth - 1) / (depth * (s - m))

            out.append(quad(rate, math.log(m0), math.log(s / 2), limit=200)[0] / lr)
    return out


def not_plain_full_batch_gd(experiment: dict) -> str | None:
    """Why a run is not plain full-batch gradient descent (no momentum, no weight decay, the
    whole training set each step), the setting the small-init theories are written for; None
    when it is."""
    optim, trainer = experiment.get("optim") or {}, experiment.get("trainer") or {}
    momentum = 0.0 if optim.get("name") == "gd" else optim.get("momentum", 0.0)
    if optim.get("name") not in ("gd", "sgd") or momentum or optim.get("weight_decay"):
        return "none (theory covers plain gradient descent)"
    if trainer.get("batch_size") is not None:
        return "none (theory covers full-batch gradient descent)"
    return None


def theory_for(experiment: dict, targets: list[float]) -> tuple[list | None, str]:
    """Predicted step times if the run is plain full-batch GD on a deep linear net; else why not."""
    model, optim = experiment.get("model") or {}, experiment.get("optim") or {}
    if model.get("name") != "deep_linear":
        return None, "none (theory covers deep_linear models)"
    not_gd = not_plain_full_batch_gd(experiment)
    if not_gd:
        return None, not_gd
    try:
        depth = int(model.get("depth", 2))
        lr, init_scale = float(optim["lr"]), float(model["init_scale"])
    except (KeyError, TypeError, ValueError):
        return None, "none (optim.lr, model.init_scale or model.depth missing)"
    times = theory_half_times(targets, lr, init_scale, depth)
    if depth == 1:
        label = "depth 1: all modes at once"
    elif depth > MAX_DEPTH:
        label = f"none (no fitted init beyond depth {MAX_DEPTH})"
    elif depth in FITTED_INIT:
        label = (f"balanced depth-{depth} ODE, m0 = {FITTED_INIT[depth]} u0^{depth}/2 "
                 "(init factor fitted to simulations)")
    else:
        label = f"balanced depth-{depth} ODE, m0 = u0^{depth}/2"
    return times, label
