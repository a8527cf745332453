"""The two-variable description of second-order regression dynamics, beside the measured run.

Along the top NTK mode (measure/second_order.py), with x = eta lambda (x = 2 is the edge of
stability), w = eta sqrt(b) zeta (the top mode's residual in units of its curvature) and
kappa = a / sqrt(b) in [-1, 1] (the cosine between the mode's gradient direction and its
curvature image), one GD step is the map
    x' = x (1 - 2 kappa w + w^2),        w' = w (1 - x + kappa x w / 2),
exact for a one-residual quadratic model (w' in the units of the step's b, which moves with
the mode; fixed for an isotropic Q) and, with many residuals, the top mode's own part of the
step. Everything else in the change of x, the "drive", comes from the other modes: it is
the whole of progressive sharpening (w ~ 0 there: the top mode is fit first), and at the edge
the top mode is unstable, its w grows and its term -2 kappa w x pulls x back against the drive.
A run that holds at the edge shows the two terms cancelling and its loss carried by the top mode.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ("second_order/ntk_lambda", "second_order/zeta", "second_order/a", "second_order/b",
           "second_order/loss")


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
    """step, x, w, kappa, top-mode loss share and loss, from a run's second_order columns.

    None without them. `lr` is the GD step size. Rows with b = 0 (no curvature: the linear
    model) get kappa = 0.
    """
    if any(c not in metrics for c in COLUMNS) or "step" not in metrics:
        return None
    frame = metrics[["step", *COLUMNS]].apply(pd.to_numeric, errors="coerce").dropna()
    frame = frame.groupby("step", as_index=False).last().sort_values("step")
    frame = frame[np.isfinite(frame[list(COLUMNS)]).all(axis=1)]
    if frame.empty:
        return None
    lam, zeta, a, b, loss = (frame[c].to_numpy(float) for c in COLUMNS)
    root_b = np.sqrt(np.clip(b, 0, None))
    kappa = np.divide(a, root_b, out=np.zeros_like(a), where=root_b > 0)
    share = np.divide(0.5 * zeta**2, loss, out=np.full_like(loss, np.nan), where=loss > 0)
    return pd.DataFrame({"step": frame["step"].to_numpy(int), "x": lr * lam,
                         "w": lr * root_b * zeta, "kappa": np.clip(kappa, -1, 1),
                         "top_share": share, "loss": loss})


def budget(variables: pd.DataFrame) -> pd.DataFrame:
    """Per consecutive pair of steps: the change of x, the map's top-mode part and the drive."""
    v = variables.reset_index(drop=True)
    consecutive = np.diff(v["step"].to_numpy()) == 1
    x, w, kappa = (v[c].to_numpy()[:-1] for c in ("x", "w", "kappa"))
    change = np.diff(v["x"].to_numpy())
    top = x * (w**2 - 2 * kappa * w)
    table = pd.DataFrame({"step": v["step"].to_numpy()[:-1], "dx": change, "top": top,
                          "drive": change - top})
    return table[consecutive].reset_index(drop=True)


def edge_numbers(variables: pd.DataFrame, crossing_step: float | None) -> dict[str, float | None]:
    """Theory against the run, for the summary table.

    - drive_share_before_edge: of the rise of x before the crossing, the part the drive made
      (1: progressive sharpening is the other modes' work, as the picture says);
    - top_pull_vs_drive: after the crossing, minus the top mode's summed change of x over the
      drive's (1: the top mode holds x at the edge against the drive);
    - top_mode_loss_share: after the crossing, median share of the loss on the top mode.
    """
    out: dict[str, float | None] = dict.fromkeys(
        ("drive_share_before_edge", "top_pull_vs_drive", "top_mode_loss_share"))
    table = budget(variables)
    if table.empty or crossing_step is None:
        return out
    before, after = table[table["step"] < crossing_step], table[table["step"] >= crossing_step]
    rise = before["dx"].sum()
    if len(before) and rise > 0:
        out["drive_share_before_edge"] = float(before["drive"].sum() / rise)
    drive = after["drive"].sum()
    if len(after) and drive > 0:
        out["top_pull_vs_drive"] = float(-after["top"].sum() / drive)
    shares = variables.loc[variables["step"] >= crossing_step, "top_share"].dropna()
    if len(shares):
        out["top_mode_loss_share"] = float(shares.median())
    return out
