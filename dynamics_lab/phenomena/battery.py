"""The shared detector battery, in the manner of scikit-learn's `check_estimator`: for every
registered phenomenon, textbook curves that must be `detected`, look-alikes that must be
`not_detected`, and too-little-data or missing-column tables that must be `undetermined`, each
family in several variants (noise, evaluation cadence, run length), plus damaged tables that
must change no answer.

A phenomenon brings its own cases: `Detector.cases()`, by default `cases()` of the `cases.py`
beside its detector. This module holds what every phenomenon's cases share (`Case`, the damage
helpers) and collects them through the registry (`all_cases()`), built-ins and plugins alike;
`outcome(case)` runs one through today's detectors (tests/test_detectors.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

DETECTED, NOT, UNDETERMINED = "detected", "not_detected", "undetermined"


@dataclass(frozen=True)
class Case:
    """One table and the outcome its phenomenon's detector must reach.

    make() -> (metrics, experiment config), judged by the phenomenon's detector; or, with a
    `judge`, whatever the judge reads (a sweep's sizes and errors for a scaling fit), judged by
    it.
    """

    phenomenon: str
    family: str
    variant: str
    expected: str
    make: Callable[[], tuple] = field(repr=False, compare=False)
    judge: Callable[[tuple], object] | None = field(default=None, repr=False, compare=False)

    @property
    def id(self) -> str:
        return f"{self.phenomenon}:{self.family}[{self.variant}]"


def variants(knobs: list[dict]) -> list[tuple[str, dict]]:
    """(`k=v, ...`, knobs) for each set of generator knobs: the variant names of a family."""
    return [(", ".join(f"{k}={v}" for k, v in kw.items()), kw) for kw in knobs]


def drop(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    return frame.drop(columns=list(columns))


def last(frame: pd.DataFrame, column: str, value) -> pd.DataFrame:
    """The table with its last value of `column` replaced (a crossing at the final evaluation)."""
    frame = frame.copy()
    frame.loc[frame.index[-1], column] = value
    return frame


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
    last_row = {"step": int(at), "train/loss": np.inf if kind == "inf" else np.nan,
                "train/acc": 0.01}
    return pd.concat([out, pd.DataFrame([last_row])], ignore_index=True)


def damage_cases(phenomenon: str, make: Callable[[], pd.DataFrame],
                 experiment: dict) -> list[Case]:
    """A detected table damaged three ways (still detected) and made unreadable three ways
    (undetermined): the cases every phenomenon's battery ends with."""
    out = [Case(phenomenon, "damaged table", how, DETECTED,
                lambda how=how: (damaged(make(), how), experiment))
           for how in ("shuffled", "text", "wandb")]
    out += [Case(phenomenon, "no verdict possible", how, UNDETERMINED,
                 lambda how=how: (hostile(make(), how), experiment))
            for how in ("negative", "one row", "all missing")]
    return out


# -- collection -------------------------------------------------------------------------------


def all_cases(names: Iterable[str] | None = None) -> list[Case]:
    """Every registered phenomenon's cases (or those of `names`), in name order."""
    from dynamics_lab.registry import PHENOMENA

    return [case for name in (PHENOMENA.names() if names is None else names)
            for case in PHENOMENA.get(name).cases()]


def outcome(case: Case) -> str:
    """What today's detectors say about the case."""
    from dynamics_lab.phenomena import detect

    if case.judge is not None:
        return str(case.judge(case.make()))
    frame, experiment = case.make()
    return str(detect(case.phenomenon, frame, experiment).outcome)
