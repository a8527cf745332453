"""The two-variable description of second-order regression dynamics, beside the measured run.

Along the top NTK mode (measure/second_order.py), with x = eta lambda (x = 2 is the edge of
stability), w = eta sqrt(b) zeta (the top mode's residual in units of its curvature) and
kappa = a / sqrt(b) in [-1, 1] (the cosine between the mode's gradient direction and its
curvature image), one GD step is the map
    x' = x (1 - 2 kappa w + w^2),        w' = w (1 - x + kappa x w / 2),
where x' is the curvature of the same mode after the step (u . K' u with u fixed) and w' is in
the units of the step's b. It is exact for one residual; with many, the measured change of x
splits (`budget`) into
    top       the map's term x (w^2 - 2 kappa w): the top mode's own residual,
    others    the rest of the change of u . K u: the other residual components,
    turn      lambda_max(K') - u . K' u >= 0: the top eigenvector turning to a new direction.
Before the edge the rise is mostly the other modes' work (w ~ 0: the top mode is fit first). At
the edge the top mode is unstable, its w grows, and its term pulls x back, against a push up that
comes from the other modes and, in a comparable part, from the top eigenvector turning.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dynamics_lab.metric_names import SecondOrder

COLUMNS = (SecondOrder.NTK_LAMBDA, SecondOrder.ZETA, SecondOrder.A, SecondOrder.B,
           SecondOrder.LOSS)
PREVIOUS = SecondOrder.NTK_LAMBDA_PREV_MODE
# The top mode's term varies by less than this share of the mode's change: it is fit, inactive.
_ACTIVE = 1e-6


def step(x: np.ndarray, w: np.ndarray, kappa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One GD step of the two-variable map."""
    return x * (1 - 2 * kappa * w + w**2), w * (1 - x + 0.5 * kappa * x * w)


def trajectory(x0: float, w0: float, kappa: float, steps: int) -> pd.DataFrame:
    """The map iterated `steps` times at fixed kappa (one residual, isotropic curvature)."""
    x, w, rows = np.float64(x0), np.float64(w0), [(0, x0, w0)]
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(1, steps + 1):
            x, w = step(x, w, kappa)
            rows.append((t, float(x), float(w)))
            if not (np.isfinite(x) and np.isfinite(w)):
                break  # diverged: the last row says so
    return pd.DataFrame(rows, columns=["step", "x", "w"])


def reduced_variables(metrics: pd.DataFrame, lr: float) -> pd.DataFrame | None:
    """step, x, w, kappa, x of the previous step's mode, top-mode loss share and loss, from a
    run's second_order columns; None without them. `lr` is the GD step size. Rows with b = 0
    (outputs linear in the parameters) get kappa = 0."""
    if any(c not in metrics for c in COLUMNS) or "step" not in metrics:
        return None
    names = [*COLUMNS, *([PREVIOUS] if PREVIOUS in metrics else [])]
    frame = metrics[["step", *names]].apply(pd.to_numeric, errors="coerce")
    frame = frame.dropna(subset=["step", *COLUMNS])
    frame = frame.groupby("step", as_index=False).last().sort_values("step")
    frame = frame[np.isfinite(frame[list(COLUMNS)]).all(axis=1)]
    if frame.empty:
        return None
    lam, zeta, a, b, loss = (frame[c].to_numpy(float) for c in COLUMNS)
    root_b = np.sqrt(np.clip(b, 0, None))
    kappa = np.divide(a, root_b, out=np.zeros_like(a), where=root_b > 0)
    share = np.divide(0.5 * zeta**2, loss, out=np.full_like(loss, np.nan), where=loss > 0)
    previous = frame[PREVIOUS].to_numpy(float) if PREVIOUS in frame else np.full_like(lam, np.nan)
    return pd.DataFrame({"step": frame["step"].to_numpy(int), "x": lr * lam,
                         "w": lr * root_b * zeta, "kappa": np.clip(kappa, -1, 1),
                         "x_prev_mode": lr * previous, "top_share": share, "loss": loss})


def budget(variables: pd.DataFrame) -> pd.DataFrame:
    """Per pair of consecutive steps: the change of x and its parts top, others, turn."""
    v = variables.reset_index(drop=True)
    consecutive = np.diff(v["step"].to_numpy()) == 1
    x, w, kappa = (v[c].to_numpy()[:-1] for c in ("x", "w", "kappa"))
    after, same_mode = v["x"].to_numpy()[1:], v["x_prev_mode"].to_numpy()[1:]
    top = x * (w**2 - 2 * kappa * w)
    table = pd.DataFrame({"step": v["step"].to_numpy()[:-1], "dx": after - x, "top": top,
                          "others": same_mode - x - top, "turn": after - same_mode})
    table = table[consecutive & np.isfinite(same_mode)]
    return table.reset_index(drop=True)


def edge_numbers(variables: pd.DataFrame, reach: float = 0.95) -> dict[str, float | None]:
    """The picture against the run, for the summary table. The crossing is the first step with
    x >= 2 reach (the NTK's own crossing, sampled every step).

    - others_share_before_edge: of the rise of x before the crossing, the part the other modes
      made (the top mode's own term and the turning make the rest);
    - map_r2_after_edge: after the crossing, the part of the step-to-step variance of the top
      mode's own change of curvature (top + others) that the map's term explains (1 for one
      residual). None when the top mode is fit (its term ~0: nothing for the map to explain);
    - turn_share_after_edge: after the crossing, the turning's part of the push up
      (others + turn) that the top mode's term holds back;
    - top_mode_loss_share: after the crossing, the median share of the loss on the top mode
      (near 1: the run oscillates at the edge on that mode; near 0: it settled below the edge
      with the top mode fit).
    """
    out: dict[str, float | None] = dict.fromkeys(
        ("edge_crossing_step", "others_share_before_edge", "map_r2_after_edge",
         "turn_share_after_edge", "top_mode_loss_share"))
    above = np.flatnonzero(variables["x"].to_numpy() >= 2 * reach)
    if not len(above):
        return out
    crossing = int(variables["step"].to_numpy()[above[0]])
    out["edge_crossing_step"] = crossing
    table = budget(variables)
    before, after = table[table["step"] < crossing], table[table["step"] >= crossing]
    rise = before["dx"].sum()
    if len(before) and rise > 0:
        out["others_share_before_edge"] = float(before["others"].sum() / rise)
    own = after["top"] + after["others"]
    if len(after) >= 10 and after["top"].var() > _ACTIVE * own.var() > 0:
        out["map_r2_after_edge"] = float(1 - (own - after["top"]).var() / own.var())
    push = after["others"].sum() + after["turn"].sum()
    if len(after) and push > 0:
        out["turn_share_after_edge"] = float(after["turn"].sum() / push)
    shares = variables.loc[variables["step"] >= crossing, "top_share"].dropna()
    if len(shares):
        out["top_mode_loss_share"] = float(shares.median())
    return out
