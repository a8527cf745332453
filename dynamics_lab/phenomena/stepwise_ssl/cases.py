"""The stepwise_ssl cases of the shared detector battery (phenomena/battery.py): a linear Barlow
Twins encoder from small initialisation learning its embedding's eigenmodes one at a time (Simon
et al.), read from the mode strengths or the embedding eigenvalues, and the look-alikes (modes
rising together from a large init, exponential saturations without plateaus)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dynamics_lab.phenomena import synthetic as syn
from dynamics_lab.phenomena.battery import DETECTED, NOT, UNDETERMINED, Case, variants

SSL = {"task": {"name": "augmented_pairs", "dim": 16, "spectrum": [1.0, 0.5, 0.25, 0.125],
                "embed_dim": 4}, "model": {"name": "linear_encoder", "init_scale": 1e-3},
       "optim": {"name": "gd", "lr": 0.05}}


def table(kind: str = "logistic", steps: int = 800, log_spaced: bool = False,
          noise: float = 0.0, seed: int = 0, eig_only: bool = False,
          gamma=(1.0, 0.5, 0.25, 0.125), lr: float = 0.05) -> pd.DataFrame:
    """modes/strength_j (or embedding/eig_j) of a linear Barlow Twins encoder, every step or at
    ~300 log-spaced steps, and train/batch_loss = sum (1 - q_j)^2. `kind`: logistic (small init,
    mode j half-way at ln(1e7) / (2 ln(1 + 4 lr gamma_j))), together (large init: all rise at
    once), saturate (separate exponential approaches 1 - exp(-rate t), no plateau)."""
    t = np.arange(steps + 1, dtype=float)
    rates = [2 * np.log1p(4 * lr * g) for g in gamma]
    q = {"logistic": [syn.sigmoid(r * t - np.log(1e7)) for r in rates],
         "together": [syn.sigmoid(rates[0] * t - 3.0)] * len(rates),
         "saturate": [1 - np.exp(-r * t / 4) for r in rates]}[kind]
    frame = pd.DataFrame({"step": t.astype(int), "train/batch_loss": syn.noisy(
        sum((1 - x) ** 2 for x in q) + 1e-6, noise, seed, relative=True)})
    logged = t if not log_spaced else np.unique(np.round(np.logspace(0, np.log10(steps), 300)))
    keep = np.isin(t, logged) | (t == 0)
    for j, x in enumerate(q):
        column = f"{'embedding/eig_' if eig_only else 'modes/strength_'}{j}"
        frame[column] = np.where(keep, syn.noisy(x, noise, seed + 1 + j), np.nan)
    return frame


def cases() -> list[Case]:
    """Every stepwise_ssl case of the battery."""
    out = []
    for name, kw in variants([dict(steps=800, noise=0.0), dict(steps=800, log_spaced=True,
                                                                noise=0.01),
                              dict(steps=1600, noise=0.03)]):
        for family, extra, expected in (
                ("textbook", {}, DETECTED), ("eigenvalues only", dict(eig_only=True), DETECTED),
                ("modes rise together", dict(kind="together"), NOT),
                ("exponential saturations", dict(kind="saturate"), NOT),
                ("too short", dict(steps=60), UNDETERMINED)):
            out.append(Case("stepwise_ssl", family, name, expected,
                            lambda e=extra, kw=kw: (table(**{**kw, **e}), SSL)))
    out.append(Case("stepwise_ssl", "no spectrum, no loss", "steps=800", UNDETERMINED, lambda: (
        table()[["step"]].assign(other=1.0), SSL)))
    return out
