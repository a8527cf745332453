"""Hostile tables for the detector battery: look-alikes that test a detector's reading of its
paper's definition (a slow rise after the fit, a fit lost and regained, a learning-rate decay, a
mode learned and lost, a drop that does not last, a kernel followed only at the start), runs that
diverged, and damaged tables (rows shuffled and repeated, numbers as text, a W&B export, negative
steps, a single row) that must change no answer and crash nothing. Built from synthetic.py's
curves; `rows()` lists them as (phenomenon, family, variant, expected, make) for battery.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dynamics_lab.phenomena import synthetic as syn

DETECTED, NOT, UNDETERMINED = "detected", "not_detected", "undetermined"
GD = {"optim": {"name": "gd", "lr": 0.1}}
STEPWISE = {"task": {"name": "low_rank_regression", "singular_values": [3.0, 1.0, 0.3]}}


# -- damage -----------------------------------------------------------------------------------


def damaged(frame: pd.DataFrame, how: str, seed: int = 0) -> pd.DataFrame:
    """`frame` damaged without changing what it says: shuffled (rows in random order, every
    row twice), text (every value a string, one cell 'n/a'), wandb (a W&B history export: `_step`,
    a media column of dicts, the metrics split over rows of the same step)."""
    if how == "shuffled":
        return pd.concat([frame, frame]).sample(frac=1, random_state=seed)
    if how == "text":
        out = frame.astype(str)
        out.iloc[len(out) // 3, -1] = "n/a"
        return out
    columns = [c for c in frame if c != "step"]
    parts = [frame[["step", c]].dropna() for c in columns]
    out = pd.concat(parts, ignore_index=True).rename(columns={"step": "_step"})
    out["media"] = [{"_type": "image-file"}] * len(out)
    return out.reset_index(drop=True)


def hostile(frame: pd.DataFrame, how: str) -> pd.DataFrame:
    """Tables no verdict can come from: negative (steps shifted below zero), one row, all
    missing (every metric NaN)."""
    if how == "negative":
        return frame.assign(step=frame["step"] - frame["step"].max() // 2)
    if how == "one row":
        return frame.iloc[:1]
    return frame.assign(**{c: np.nan for c in frame if c != "step"})


def diverged(frame: pd.DataFrame, at: float, kind: str = "inf") -> pd.DataFrame:
    """The run cut at step `at`, where its training loss became non-finite: logged as inf, or
    (kind nan) as an empty cell beside that evaluation's train/acc, as metrics.csv stores a NaN."""
    out = frame[frame["step"] < at].copy()
    if "train/loss" not in out:
        out["train/loss"] = np.where(out.drop(columns="step").notna().any(axis=1), 0.1, np.nan)
    last = {"step": int(at), "train/loss": np.inf if kind == "inf" else np.nan,
            "train/acc": 0.01}
    return pd.concat([out, pd.DataFrame([last])], ignore_index=True)


def _shuffled_etc(phenomenon, make, experiment) -> list[tuple]:
    out = [(phenomenon, "damaged table", how, DETECTED,
            lambda how=how: (damaged(make(), how), experiment))
           for how in ("shuffled", "text", "wandb")]
    out += [(phenomenon, "no verdict possible", how, UNDETERMINED,
             lambda how=how: (hostile(make(), how), experiment))
            for how in ("negative", "one row", "all missing")]
    return out


# -- grokking ---------------------------------------------------------------------------------


def grokking(kind: str, every: int = 20, steps: int = 4000, noise: float = 0.0) -> pd.DataFrame:
    """syn.grokking's textbook run, changed: slow (val acc climbs steadily from the fit, 0.01 at
    step 120, to 0.99 at 3/4 of the run), partial (the late rise stops at 0.6), dips (train acc
    falls to 0.7 for five evaluations after the fit, then refits), lost (fit from step 200, the
    fit is lost from step 400 until just before the rise at 1 500), binary (chance 0.55: val
    acc 0.55 at the fit)."""
    frame = syn.grokking("grok", every=every, steps=steps, noise=noise)
    t = frame["step"].to_numpy(float)
    if kind == "slow":
        rise = np.clip((t - 120) / (0.75 * steps - 120), 0, 1)
        frame["val/acc"] = syn.noisy(0.01 + 0.98 * rise, noise, 1, clip=(0, 1))
    elif kind == "partial":
        frame["val/acc"] = syn.noisy(0.01 + 0.59 * syn.sigmoid((t - 1500) / 60), noise, 1,
                                     clip=(0, 1))
    elif kind == "dips":
        dip = (t >= 800) & (t < 800 + 5 * every)
        frame.loc[dip, "train/acc"] = 0.7
    elif kind == "lost":
        frame.loc[(t >= 400) & (t < 1440), "train/acc"] = 0.5
    elif kind == "binary":
        frame = syn.grokking("grok", every=every, steps=steps, noise=noise, chance=0.55)
    return frame


def _grokking() -> list[tuple]:
    out = []
    cadences = {"every=20": dict(every=20), "every=50, steps=10000, noise=0.01":
                dict(every=50, steps=10000, noise=0.01)}
    for variant, kw in cadences.items():
        for family, kind, expected in (("slow steady rise after the fit", "slow", DETECTED),
                                       ("late rise to 60% only", "partial", NOT),
                                       ("train acc dips after the fit", "dips", DETECTED),
                                       ("fit lost until generalization", "lost", NOT),
                                       ("binary task, val acc 0.55 at the fit", "binary",
                                        DETECTED)):
            out.append(("grokking", family, variant, expected,
                        lambda k=kind, kw=kw: (grokking(k, **kw), {})))
        for kind in ("inf", "nan"):
            name = f"{variant}, {kind} loss"
            out.append(("grokking", "diverged after grokking", name, DETECTED, lambda k=kind, kw=kw:
                        (diverged(syn.grokking("grok", **kw), 3000, k), {})))
            out.append(("grokking", "diverged before generalizing", name, NOT,
                        lambda k=kind, kw=kw: (diverged(syn.grokking("grok", **kw), 1000, k),
                                               {})))
    out.append(("grokking", "val acc logged only after the fit", "from step 1000", UNDETERMINED,
                lambda: (syn.grokking("grok").pipe(
                    lambda f: f.assign(**{"val/acc": f["val/acc"].where(f.step >= 1000)})), {})))
    out.append(("grokking", "few evaluations", "3 evaluations", UNDETERMINED,
                lambda: (syn.grokking("grok", every=2000), {})))
    return out + _shuffled_etc("grokking", lambda: syn.grokking("grok"), {})


# -- edge of stability ------------------------------------------------------------------------


def edge_of_stability(kind: str, every: int = 25, steps: int = 3000,
                      noise: float = 0.0) -> pd.DataFrame:
    """syn.edge_of_stability's textbook run, changed: swings (after reaching the threshold the
    sharpness swings +-40% around it), decay (the learning rate halves at 2/3 of the run: the
    logged threshold doubles, the sharpness stays where it was)."""
    frame = syn.edge_of_stability(every=every, steps=steps, noise=noise)
    t = frame["step"].to_numpy(float)
    sampled = frame["hessian/lambda_max"].notna().to_numpy() & (t >= 700)
    if kind == "swings":
        frame.loc[sampled, "hessian/lambda_max"] = 20 * (1 + 0.4 * np.sin(1.3 * t[sampled] / every))
    elif kind == "decay":
        frame.loc[t >= 2 * steps / 3, "hessian/threshold"] *= 2
    return frame


def _eos() -> list[tuple]:
    out = []
    momentum = {"optim": {"name": "sgd", "lr": 0.1, "momentum": 0.5}}  # (2 + 2 beta) / eta = 30
    for variant, kw in {"every=25": dict(every=25), "every=50, steps=6000, noise=0.02":
                        dict(every=50, steps=6000, noise=0.02)}.items():
        out += [("edge_of_stability", "swings +-40% around 2/eta", variant, NOT,
                 lambda kw=kw: (edge_of_stability("swings", **kw), GD)),
                ("edge_of_stability", "learning rate halved at 2/3", variant, DETECTED,
                 lambda kw=kw: (edge_of_stability("decay", **kw), GD)),
                ("edge_of_stability", "threshold from momentum in the config", variant,
                 DETECTED, lambda kw=kw: (syn.edge_of_stability(threshold=30.0, **kw).drop(
                     columns=["hessian/threshold"]), momentum))]
        for kind in ("inf", "nan"):
            out.append(("edge_of_stability", "diverged at the threshold", f"{variant}, {kind}",
                        NOT, lambda k=kind, kw=kw: (diverged(syn.edge_of_stability(**kw),
                                                             0.9 * kw.get("steps", 3000), k),
                                                    GD)))
    out.append(("edge_of_stability", "few samples", "2 samples", UNDETERMINED,
                lambda: (syn.edge_of_stability(every=2000), GD)))
    return out + _shuffled_etc("edge_of_stability", syn.edge_of_stability, GD)


# -- stepwise, hidden progress, lazy/rich, scaling law ----------------------------------------


def _fallen(frame: pd.DataFrame) -> pd.DataFrame:
    """Mode 1 learned, then unlearned: it falls back to zero from step 1 400."""
    t = frame["step"].to_numpy(float)
    return frame.assign(**{"modes/strength_1": frame["modes/strength_1"]
                           * (1 - syn.sigmoid((t - 1400) / 40))})


def _stepwise() -> list[tuple]:
    out = []
    equal = {"task": {"name": "low_rank_regression", "singular_values": [1.0, 1.0, 0.3]}}
    for variant, kw in {"every step": dict(), "log-spaced, noise=0.01":
                        dict(log_spaced=True, noise=0.01)}.items():
        out += [("stepwise", "two modes of equal strength", variant, DETECTED,
                 lambda kw=kw: (syn.stepwise(s=(1.0, 1.0, 0.3), **kw), equal)),
                ("stepwise", "a mode learned, then lost", variant, NOT,
                 lambda kw=kw: (_fallen(syn.stepwise(**kw)), STEPWISE)),
                ("stepwise", "a mode learned, then lost", f"{variant}, no teacher", NOT,
                 lambda kw=kw: (_fallen(syn.stepwise(**kw)), {}))]
    out.append(("stepwise", "a mode never logged", "strength_2 all NaN", UNDETERMINED,
                lambda: (syn.stepwise().assign(**{"modes/strength_2": np.nan}), STEPWISE)))
    return out + _shuffled_etc("stepwise", syn.stepwise, STEPWISE)


def _relapse(frame: pd.DataFrame) -> pd.DataFrame:
    """The loss back on its plateau (and the accuracy at chance) from step 1 800 to 3 000."""
    back = (frame.step >= 1800) & (frame.step <= 3000)
    return frame.assign(**{"val/loss": frame["val/loss"].mask(back, 1.0),
                           "val/acc": frame["val/acc"].mask(back, 0.5)})


def _hidden_progress() -> list[tuple]:
    out = []
    for variant, kw in {"every=100": dict(every=100), "every=50, noise=0.02":
                        dict(every=50, noise=0.02)}.items():
        out.append(("hidden_progress", "drop, then back on the plateau", variant, NOT,
                    lambda kw=kw: (_relapse(syn.hidden_progress(**kw)), {})))
    out += [("hidden_progress", "drop at the last evaluations", "every=100", UNDETERMINED,
             lambda: (syn.hidden_progress(drop_at=3850), {})),
            ("hidden_progress", "mass logged only after the drop", "from step 2000",
             UNDETERMINED, lambda: (syn.hidden_progress().pipe(lambda f: f.assign(**{
                 "features/relevant_mass_top10":
                 f["features/relevant_mass_top10"].where(f.step >= 2000)})), {}))]
    return out + _shuffled_etc("hidden_progress", syn.hidden_progress, {})


def _lazy_rich() -> list[tuple]:
    early = lambda f: f.assign(**{c: f[c].where(f.step <= 400)  # noqa: E731
                                  for c in ("ntk/distance_init", "ntk/alignment")})
    return [("lazy_rich", "static kernel followed only at the start", "to step 400",
             UNDETERMINED, lambda: (early(syn.lazy_rich("settle", "static")), {})),
            ("lazy_rich", "infinite test loss at the last evaluation", "every=50", DETECTED,
             lambda: (syn.lazy_rich().pipe(lambda f: f.assign(**{"val/loss": f["val/loss"].where(
                 f.step < f.step.max(), np.inf)})), {}))] + _shuffled_etc(
        "lazy_rich", syn.lazy_rich, {})


def _scaling_law() -> list[tuple]:
    def classes(n):
        frame, experiment = syn.memory_run(0.05, 64)
        experiment["task"]["n_classes"] = n
        return frame, experiment

    return [("scaling_law", "chance not defined", f"n_classes={n!r}", UNDETERMINED,
             lambda n=n: classes(n)) for n in (1, 0, "many")] + [
        ("scaling_law", "only the error before training", "step 0", UNDETERMINED,
         lambda: (syn.memory_run(0.05, 64)[0].iloc[:1], syn.memory_run(0.05, 64)[1]))]


def rows() -> list[tuple]:
    """Every hostile case as (phenomenon, family, variant, expected outcome, make)."""
    return [*_grokking(), *_eos(), *_stepwise(), *_hidden_progress(), *_lazy_rich(),
            *_scaling_law()]
