"""Small-init theory of stepwise self-supervised learning (Simon et al. 2023): when each
eigenmode of the views' cross-correlation is half-learned by a linear Barlow Twins encoder.

Setting (tasks/augmented_pairs.py, models/linear_encoder.py, losses.barlow_twins): embeddings
z = W x (W: d x m), C = W Gamma W^T, loss ||C - I||_F^2, so gradient descent moves
W <- W + 4 lr (I - C) W Gamma. Along an eigenmode (gamma_j, v_j) of Gamma, while the mode is
still small, W v_j grows by (1 + 4 lr gamma_j) per step; its strength q_j = gamma_j |W v_j|^2
(the eigenvalue of C it becomes) obeys dq/dtau = 8 gamma_j q (1 - q) in flow time tau = lr step:
the sigmoid of the paper's aligned-init solution, half-way at ln(1/q_j(0) - 1) / (8 gamma_j).
In steps, with gradient descent's growth per step,
    t_j = ln(1/q_j(0) - 1) / (2 ln(1 + 4 lr gamma_j)).

Initial strength from a random init (entries N(0, u0^2 / m)): mode j can only grow in the d - j
embedding directions the stronger modes have not taken (they are held at 1 by the I - C factor),
so q_j(0) = gamma_j (u0^2 / m) chi^2_{d-j}. Its log-average, E ln chi^2_k = psi(k/2) + ln 2
(digamma), gives the prediction. Checked against simulated encoders (tests/test_stepwise_ssl.py):
with the exact projection of each seed's init the half-times agree within 1%; the log-average
agrees within ~3% on average, single seeds scatter ~5-13% (most for the last mode, one direction
left: chi^2 with one degree of freedom). Only the min(d, k) strongest modes are learned; no
prediction where q_j(0) > 1/81: a rise from 10% to 90% takes a growth of ln 81, so a smaller
head start leaves no plateau before it (the init is not small for that mode).
"""

from __future__ import annotations

import math

import numpy as np

from dynamics_lab.phenomena.stepwise.theory import not_plain_full_batch_gd

MAX_INITIAL = 1 / 81  # no prediction when a mode starts above this strength


def initial_strength(gamma: float, index: int, embed_dim: int, in_dim: int,
                     init_scale: float) -> float:
    """Log-average q_j(0) = gamma u0^2 / m * exp(E ln chi^2_{d-j}) of mode `index` (module doc)."""
    from scipy.special import digamma  # here, not at the top: runs of other phenomena skip scipy

    free = embed_dim - index
    return gamma * init_scale**2 / in_dim * math.exp(digamma(free / 2) + math.log(2))


def ssl_half_times(spectrum: list[float], embed_dim: int, in_dim: int, init_scale: float,
                   lr: float) -> list[float | None]:
    """Predicted half-way step of each learnable mode, strongest first (module docstring)."""
    out: list[float | None] = []
    for j, gamma in enumerate(sorted(spectrum, reverse=True)[:embed_dim]):
        q0 = initial_strength(gamma, j, embed_dim, in_dim, init_scale)
        out.append(None if q0 > MAX_INITIAL else
                   math.log(1 / q0 - 1) / (2 * math.log1p(4 * lr * gamma)))
    return out


def ssl_curve(step, gamma: float, q0: float, lr: float):
    """q(step) of one mode: the logistic with GD's per-step growth (1 + 4 lr gamma)^2."""
    growth = np.exp(2 * np.asarray(step, float) * math.log1p(4 * lr * gamma))
    return 1 / (1 + (1 / q0 - 1) / growth)


def theory_for(experiment: dict) -> tuple[list | None, str]:
    """Predicted step times if the run is full-batch GD on a linear encoder of augmented pairs;
    else None and why not."""
    task, model = experiment.get("task") or {}, experiment.get("model") or {}
    optim = experiment.get("optim") or {}
    if task.get("name") != "augmented_pairs" or model.get("name") != "linear_encoder":
        return None, "none (theory covers linear_encoder on augmented_pairs)"
    not_gd = not_plain_full_batch_gd(experiment)
    if not_gd:
        return None, not_gd
    times = ssl_half_times(task["spectrum"], int(task["embed_dim"]), int(task["dim"]),
                           float(model["init_scale"]), float(optim["lr"]))
    return times, "aligned-mode sigmoid, q0 = gamma u0^2/m exp(E ln chi^2_(d-j))"
