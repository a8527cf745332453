"""Synthetic metric tables for testing detectors: the textbook curve of each phenomenon and the
look-alikes that a first-crossing rule mistakes for it, each with knobs for noise, evaluation
cadence and run length. Pure numpy/pandas; `battery.py` turns them into a table of cases.

Every generator returns one run's metrics table (a `step` column plus metric columns, NaN where
a metric was not logged at that step), as a run directory's metrics.csv reads.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def sigmoid(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-np.asarray(x, float)))


def noisy(values, sigma: float, seed: int, relative: bool = False, clip=None) -> np.ndarray:
    """values plus Gaussian noise (times the values when relative), optionally clipped."""
    values = np.asarray(values, float)
    if sigma:
        eps = np.random.default_rng(seed).normal(0.0, sigma, values.shape)
        values = values * np.exp(eps) if relative else values + eps
    return np.clip(values, *clip) if clip else values


def merge(*frames: pd.DataFrame) -> pd.DataFrame:
    """Outer-join tables on step (metrics logged at different cadences)."""
    out = frames[0]
    for frame in frames[1:]:
        out = out.merge(frame, on="step", how="outer")
    return out.sort_values("step", kind="stable").reset_index(drop=True)


# -- grokking ---------------------------------------------------------------------------------


def grokking(val: str = "grok", every: int = 20, steps: int = 4000, noise: float = 0.0,
             seed: int = 0, fit_at: float = 120, grok_at: float = 1500,
             chance: float = 0.01) -> pd.DataFrame:
    """train/acc and val/acc every `every` steps. `val` picks the validation curve:
    grok (at `chance` until a sharp rise at grok_at), spike (one evaluation at 0.97), creep
    (already ~0.8 at the fit, creeping over 0.95 late), lost (groks, then falls back to 0.3),
    together (rises with train in the first evaluations), never (stays at chance)."""
    t = np.arange(0, steps + 1, every, dtype=float)
    train = sigmoid((t - fit_at) / (fit_at / 8))
    if val == "together":
        train = 1 - 0.99 * np.exp(-t / (every / 5))
    curves = {
        "grok": chance + (0.995 - chance) * sigmoid((t - grok_at) / 60),
        "spike": np.where(np.abs(t - grok_at) < every / 2, 0.97, chance),
        "creep": 0.2 + 0.6 * sigmoid((t - fit_at) / (fit_at / 8)) + 0.17 * t / steps,
        "lost": chance + (0.98 - chance) * sigmoid((t - grok_at) / 60)
        * (1 - 0.7 * sigmoid((t - grok_at - 1000) / 60)),
        "together": 0.98 * (1 - np.exp(-t / (0.8 * every))),
        "never": np.full(len(t), chance),
    }
    return pd.DataFrame({"step": t.astype(int),
                         "train/acc": noisy(train, noise, seed, clip=(0, 1)),
                         "val/acc": noisy(curves[val], noise, seed + 1, clip=(0, 1))})


# -- edge of stability ------------------------------------------------------------------------


def edge_of_stability(sharpness: str = "edge", loss: str = "falls", every: int = 25,
                      steps: int = 3000, noise: float = 0.0, seed: int = 0,
                      threshold: float = 20.0, reach_at: float = 700) -> pd.DataFrame:
    """hessian/lambda_max every `every` steps (with hessian/threshold) and train/batch_loss every
    step. `sharpness`: edge (sharpens from 0.15x to the threshold, hovers at 1.02x), entropy (the
    same, then declines to 0.3x from 40% of the way after the crossing, as under cross-entropy),
    catapult (starts at 3x and relaxes onto the threshold), over (settles at 1.5x), low (levels
    off at 0.6x), rising (still sharpening at the end, 0.8x). `loss`: falls (non-monotone,
    falling over the long run), grows (non-monotone, growing without bound)."""
    t = np.arange(0, steps + 1, every, dtype=float)
    ramp = np.clip(t / reach_at, 0, 1)
    hover = 1.02 + 0.03 * np.sin(t / every)
    late = sigmoid((t - (reach_at + 0.4 * (steps - reach_at))) / (0.03 * steps))
    ratio = {
        "edge": np.where(t < reach_at, 0.15 + 0.85 * ramp, hover),
        "entropy": np.where(t < reach_at, 0.15 + 0.85 * ramp, hover * (1 - 0.7 * late)),
        "catapult": 1.0 + 2.0 * np.exp(-t / (3 * every)) + 0.02 * np.sin(t / every),
        "over": np.where(t < reach_at, 0.15 + 1.35 * ramp, 1.5 + 0.03 * np.sin(t / every)),
        "low": 0.6 - 0.45 * np.exp(-t / reach_at),
        "rising": 0.15 + 0.65 * t / steps,
    }[sharpness]
    sharp = pd.DataFrame({"step": t.astype(int),
                          "hessian/lambda_max": threshold * noisy(ratio, noise, seed),
                          "hessian/threshold": threshold})
    s = np.arange(steps + 1, dtype=float)
    trend = np.exp(-s / (steps / 6)) if loss == "falls" else np.exp(s / (steps / 4))
    wiggle = np.where(s % 4 == 0, 1.5, 1.0)  # rises every 4th step: non-monotone at the edge
    batch = pd.DataFrame({"step": s.astype(int),
                          "train/batch_loss": noisy(trend * wiggle, noise, seed + 1, True)})
    return merge(batch, sharp)


# -- stepwise ---------------------------------------------------------------------------------


def mode_curves(kind: str, t: np.ndarray, s=(3.0, 1.0, 0.3), lr: float = 0.1,
                m0: float = 5e-5) -> list[np.ndarray]:
    """Mode strengths over steps: logistic (two-layer net from small init, Saxe et al.),
    together (depth-1 regression: every mode saturates at the same rate), anisotropic (linear
    regression on inputs of very different scales: separate but exponential saturations)."""
    if kind == "logistic":
        return [si * sigmoid(2 * lr * si * t - np.log(si / m0 - 1)) for si in s]
    rates = {"together": [lr] * len(s), "anisotropic": [lr, lr / 30, lr / 900]}[kind]
    return [si * (1 - np.exp(-r * t)) for si, r in zip(s, rates)]


def stepwise(kind: str = "logistic", steps: int = 2000, log_spaced: bool = False,
             noise: float = 0.0, seed: int = 0, s=(3.0, 1.0, 0.3),
             loss_only: bool = False) -> pd.DataFrame:
    """modes/strength_i and train/batch_loss (0.5 sum (s_i - m_i)^2, every step). Modes are
    logged every step or at ~100 log-spaced steps per decade; `noise` is relative to s_i.
    `kind` as in mode_curves; with loss_only the mode columns are dropped."""
    t = np.arange(steps + 1, dtype=float)
    modes = mode_curves(kind, t, s)
    loss = 0.5 * sum((si - m) ** 2 for si, m in zip(s, modes)) + 1e-4
    frame = pd.DataFrame({"step": t.astype(int),
                          "train/batch_loss": noisy(loss, noise, seed, relative=True)})
    if loss_only:
        return frame
    logged = t if not log_spaced else np.unique(np.round(np.logspace(0, np.log10(steps), 300)))
    keep = np.isin(t, logged) | (t == 0)
    for i, (si, m) in enumerate(zip(s, modes)):
        frame[f"modes/strength_{i}"] = np.where(keep, noisy(m, noise * si, seed + 1 + i), np.nan)
    return frame


def loss_curve(kind: str, steps: int = 5000, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """A train/batch_loss alone: exponential (one smooth decay), power (~ step^-1, the slope
    wandering around the loss detector's threshold)."""
    t = np.arange(steps + 1, dtype=float)
    loss = {"exponential": np.exp(-t / 300.0) + 1e-4, "power": (t + 10.0) ** -1.0}[kind]
    return pd.DataFrame({"step": t.astype(int),
                         "train/batch_loss": noisy(loss, noise, seed, relative=True)})


# -- hidden progress and lazy/rich ------------------------------------------------------------


def loss_shape(kind: str, t: np.ndarray, drop_at: float, level: float = 1.0) -> np.ndarray:
    """plateau (flat at `level`, sudden drop at drop_at), transient (starts at 2x level and
    falls to it within two evaluations, then as plateau), linear (declines steadily to zero over
    the run), exponential (slow decay, time constant a third of the run), settle (the transient
    alone: down to the level, then flat for good)."""
    span = t[-1] - t[0]
    plateau = level * (1 - sigmoid((t - drop_at) / (0.04 * drop_at)))
    first = t[1] - t[0]
    bump = level * np.exp(-(t - t[0]) / (0.7 * first))
    return {"plateau": plateau, "transient": plateau + bump,
            "linear": level * (1 - (t - t[0]) / span * 0.98),
            "exponential": level * np.exp(-(t - t[0]) / (span / 3)),
            "settle": level + 5 * bump}[kind]


def hidden_progress(loss: str = "plateau", every: int = 100, steps: int = 4000,
                    noise: float = 0.0, seed: int = 0, drop_at: float = 1500,
                    mass_rise: float = 0.1, mass: bool = True) -> pd.DataFrame:
    """val/loss (loss_shape kinds), val/acc and features/relevant_mass_top10, which grows by
    `mass_rise` (absolute, from 0.1) until the drop and jumps with it."""
    t = np.arange(0, steps + 1, every, dtype=float)
    values = noisy(loss_shape(loss, t, drop_at), noise, seed, relative=True)
    end = drop_at if loss in ("plateau", "transient") else t[-1]
    frame = pd.DataFrame({"step": t.astype(int), "val/loss": values,
                          "val/acc": np.where(values < 0.3, 1.0, 0.5)})
    if mass:
        frame["features/relevant_mass_top10"] = (
            0.1 + mass_rise * np.clip(t / end, 0, 1) + 0.4 * (values < 0.3))
    return frame


def lazy_rich(test: str = "plateau", kernel: str = "moves", every: int = 50,
              steps: int = 8000, noise: float = 0.0, seed: int = 0,
              drop_at: float = 3000) -> pd.DataFrame:
    """train/loss (fits by ~step 900), val/loss (loss_shape kinds around a level of 0.35, the
    plateau kinds falling 17x), and every 4th evaluation the NTK columns: kernel `moves`
    (distance to 0.3, alignment 0.05 -> 0.35 with the drop), `static` (distance < 0.003),
    `early` (moves 0.05 in the first evaluations, then stays), or `none` (not logged)."""
    t = np.arange(0, steps + 1, every, dtype=float)
    val = loss_shape(test, t, drop_at, level=0.33) + 0.02
    frame = pd.DataFrame({"step": t.astype(int),
                          "train/loss": noisy(0.3 * np.exp(-t / 300), noise, seed, True),
                          "val/loss": noisy(val, noise, seed + 1, True)})
    if kernel == "none":
        return frame
    rise = sigmoid((t - drop_at) / 150)
    distance = {"moves": 0.3 * rise, "static": 0.003 * t / t[-1],
                "early": 0.05 * (1 - np.exp(-t / every))}[kernel]
    alignment = 0.05 + (0.3 * rise if kernel == "moves" else 0.0 * t)
    sub = slice(None, None, 4)
    kernel_frame = pd.DataFrame({"step": t[sub].astype(int), "ntk/alignment": alignment[sub],
                                 "ntk/distance_init": distance[sub]})
    return merge(frame, kernel_frame)


# -- xor: find, then tune ---------------------------------------------------------------------


def xor(kind: str = "find_tune", every: int = 20, steps: int = 4000, noise: float = 0.0,
        seed: int = 0, search_end: float = 1000, alignment: bool = True) -> pd.DataFrame:
    """val/loss and val/acc every `every` steps, signal/alignment (and signal/random_level) at
    ~20 log-spaced steps per decade. `kind`: find_tune (loss at log 2 until search_end, then
    down to 0.01 log 2; the alignment rises 0.1 -> 0.95 during the search), late_features (the
    same loss, the alignment rising only after the drop), at_once (the loss falls from step 0),
    large_init (starts at 2x log 2 and falls), stalls (leaves log 2, then stays at 0.6 log 2)."""
    chance = float(np.log(2))
    t = np.arange(0, steps + 1, every, dtype=float)
    width = 0.05 * search_end
    drop = sigmoid((t - search_end) / width)
    loss = {"find_tune": chance * (1 - 0.99 * drop), "late_features": chance * (1 - 0.99 * drop),
            "at_once": chance * (0.01 + 0.99 * np.exp(-t / (5 * every))),
            "large_init": chance * (0.01 + 1.99 * np.exp(-t / search_end)),
            "stalls": chance * (1 - 0.4 * drop)}[kind]
    loss = noisy(loss, noise, seed, relative=True)
    frame = pd.DataFrame({"step": t.astype(int), "val/loss": loss,
                          "val/acc": np.where(loss < 0.5 * chance, 1.0, 0.5)})
    if not alignment:
        return frame
    a = np.unique(np.round(np.logspace(0, np.log10(steps), 20 * int(np.log10(steps)) + 1)))
    a = np.concatenate([[0.0], a])
    centre = {"late_features": search_end + 20 * width, "at_once": 5 * every,
              "large_init": search_end}.get(kind, 0.7 * search_end)
    rise = 0.1 + 0.85 * sigmoid((a - centre) / width)
    signal = pd.DataFrame({"step": a.astype(int), "signal/random_level": 0.1,
                           "signal/alignment": noisy(rise, noise, seed + 1, clip=(0, 1))})
    return merge(frame, signal)


# -- stepwise SSL and large-step sparsity -----------------------------------------------------


def stepwise_ssl(kind: str = "logistic", steps: int = 800, log_spaced: bool = False,
                 noise: float = 0.0, seed: int = 0, eig_only: bool = False,
                 gamma=(1.0, 0.5, 0.25, 0.125), lr: float = 0.05) -> pd.DataFrame:
    """modes/strength_j (or embedding/eig_j) of a linear Barlow Twins encoder, every step or at
    ~300 log-spaced steps, and train/batch_loss = sum (1 - q_j)^2. `kind`: logistic (small init,
    mode j half-way at ln(1e7) / (2 ln(1 + 4 lr gamma_j))), together (large init: all rise at
    once), saturate (separate exponential approaches 1 - exp(-rate t), no plateau)."""
    t = np.arange(steps + 1, dtype=float)
    rates = [2 * np.log1p(4 * lr * g) for g in gamma]
    q = {"logistic": [sigmoid(r * t - np.log(1e7)) for r in rates],
         "together": [sigmoid(rates[0] * t - 3.0)] * len(rates),
         "saturate": [1 - np.exp(-r * t / 4) for r in rates]}[kind]
    frame = pd.DataFrame({"step": t.astype(int), "train/batch_loss": noisy(
        sum((1 - x) ** 2 for x in q) + 1e-6, noise, seed, relative=True)})
    logged = t if not log_spaced else np.unique(np.round(np.logspace(0, np.log10(steps), 300)))
    keep = np.isin(t, logged) | (t == 0)
    for j, x in enumerate(q):
        column = f"{'embedding/eig_' if eig_only else 'modes/strength_'}{j}"
        frame[column] = np.where(keep, noisy(x, noise, seed + 1 + j), np.nan)
    return frame


def large_step(kind: str = "sparsify", every: int = 50, steps: int = 10000, noise: float = 0.0,
               seed: int = 0) -> pd.DataFrame:
    """train/loss, val/loss and sparsity/{active,dead}_fraction every `every` steps around a
    step-size decay at 0.7 steps. `kind`: sparsify (the loss held at 1e-3 until the decay, then
    2e-4; the active fraction falling 0.5 -> 0.3), converged (a small step size: the loss on a
    slow power law, 1.3x lower over the decay; activity flat), dense (held up and released, but
    the activity stays), early (the activity falls in the first steps, the loss never held up)."""
    t = np.arange(0, steps + 1, every, dtype=float)
    decay = 0.7 * steps
    held = np.where(t < decay, 1e-3, 2e-4) * (1 + 0.3 * np.sin(t / (3 * every)))
    slow = 1e-3 * ((t + 1000) / (decay + 1000)) ** -0.8
    loss = {"sparsify": held, "converged": slow, "dense": held, "early": slow}[kind]
    fall = {"sparsify": np.clip(t / (0.4 * steps), 0, 1), "early": np.clip(t / (2 * every), 0, 1)
            }.get(kind, 0 * t)
    active = noisy(0.5 - 0.2 * fall, noise / 5, seed + 1)
    return pd.DataFrame({"step": t.astype(int), "train/loss": noisy(loss, noise, seed, True),
                         "val/loss": 5 * loss, "sparsity/active_fraction": active,
                         "sparsity/dead_fraction": 0.1 + 0.2 * fall})


# -- scaling law ------------------------------------------------------------------------------


def memory_run(error: float, n_classes: int | None = 64) -> tuple[pd.DataFrame, dict]:
    """One associative-memory run's final population error and its config."""
    frame = pd.DataFrame({"step": [0, 250, 500],
                          "memory/population_error": [0.99, (0.99 + error) / 2, error]})
    task = {"name": "associative_memory", "n_samples": 4096, "alpha": 2.0}
    if n_classes:
        task["n_classes"] = n_classes
    return frame, {"task": task, "model": {"name": "associative_memory", "dim": 64}}


def error_curve(kind: str, sizes, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Error against size: power (x^-1), exponential (exp(-x / median size)), floor (x^-1 plus a
    constant floor: it bends flat)."""
    x = np.asarray(sizes, float)
    y = {"power": 2.0 * x ** -1.0, "exponential": np.exp(-x / np.median(x)),
         "floor": 2.0 * x ** -1.0 + 4.0 / x.max()}[kind]
    return noisy(y, noise, seed, relative=True)
