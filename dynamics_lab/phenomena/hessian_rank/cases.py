"""The Hessian-rank cases of the shared detector battery (phenomena/battery.py): rank tables
as measure/hessian_rank.py logs them, exact counts and SLQ estimates, for a deep linear network
whose closed form is known, and the look-alikes a "rank < parameters" rule would accept."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dynamics_lab.phenomena.battery import Case

# widths [10, 16, 16, 2]: 448 parameters, closed-form rank 140
NETWORK = {"model": {"name": "deep_linear", "depth": 3, "width": 16},
           "task": {"name": "low_rank_regression", "in_dim": 10, "out_dim": 2, "n_train": 64},
           "measure": {"hessian_rank": {"probe_size": 64}}}
SHALLOW = {**NETWORK, "model": {"name": "deep_linear", "depth": 1}}  # 20 parameters, rank 20
PREDICTED, N_PARAMS = 140, 448


def rank_table(kind: str = "formula", every: int = 25, steps: int = 100, exact: bool = True,
               seed: int = 0, n_params: int = N_PARAMS) -> pd.DataFrame:
    """hessian_rank/* every `every` steps. kind: formula (the closed form throughout), full
    (every parameter counted), other (deficient, but 20% below the formula), converging (the
    formula, then falling as the residual and the functional Hessian vanish), none (no rank
    column). SLQ tables (exact=False) scatter by their standard error of 2."""
    t = np.arange(0, steps + 1, every)
    rank = {"formula": np.full(len(t), PREDICTED, float), "full": np.full(len(t), n_params, float),
            "other": np.full(len(t), round(0.8 * PREDICTED), float),
            "converging": np.where(t < t[-1] / 2, PREDICTED, 0.6 * PREDICTED),
            "none": np.full(len(t), np.nan)}[kind]
    stderr = 0.0 if exact else 2.0
    if not exact:
        rank = rank + np.random.default_rng(seed).normal(0.0, stderr, len(t))
    frame = pd.DataFrame({"step": t, "hessian_rank/n_params": float(n_params),
                          "hessian_rank/exact": float(exact), "hessian_rank/rank_stderr": stderr,
                          "train/loss": np.exp(-t / steps)})
    if kind != "none":
        frame["hessian_rank/rank"] = rank
    return frame


def cases() -> list[Case]:
    """Every Hessian-rank case of the battery."""
    out: list[Case] = []
    variants = {"exact, every=25": dict(every=25), "exact, every=10, steps=200":
                dict(every=10, steps=200), "SLQ, every=25": dict(exact=False),
                "SLQ, every=50, steps=400": dict(exact=False, every=50, steps=400)}
    for name, kw in variants.items():
        for family, kind, expected in (("textbook", "formula", "detected"),
                                       ("full rank", "full", "not_detected"),
                                       ("deficient, not as predicted", "other", "not_detected"),
                                       ("drops at convergence", "converging", "not_detected"),
                                       ("no rank column", "none", "undetermined")):
            out.append(Case("hessian_rank", family, name, expected,
                        lambda k=kind, kw=kw: (rank_table(k, **kw), NETWORK)))
        out.append(Case("hessian_rank", "full rank, as the formula says", name, "not_detected",
                        lambda kw=kw: (rank_table("full", n_params=20, **kw), SHALLOW)))
        out.append(Case("hessian_rank", "no closed form (mlp)", name, "undetermined",
                        lambda kw=kw: (rank_table(**kw), {**NETWORK, "model": {
                            "name": "mlp", "depth": 2, "width": 16}})))
        out.append(Case("hessian_rank", "another parameter count", name, "undetermined",
                        lambda kw=kw: (rank_table(n_params=480, **kw), NETWORK)))
    return out
