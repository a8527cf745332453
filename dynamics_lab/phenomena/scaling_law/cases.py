"""The scaling_law cases of the shared detector battery (phenomena/battery.py): one
associative-memory run's population error against chance, and a sweep's error against size
judged by the power-law fit (a power law, and the exponential and the floor that bend away from
one), with too few sizes and chance undefined."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dynamics_lab.phenomena import synthetic as syn
from dynamics_lab.phenomena.battery import DETECTED, NOT, UNDETERMINED, Case, drop
from dynamics_lab.phenomena.scaling_law.fits import fit_power_law


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
    return syn.noisy(y, noise, seed, relative=True)


def judge_fit(made: tuple) -> str:
    """The power-law test of a sweep's scaling fit on (sizes, errors)."""
    return str(fit_power_law(*made).outcome)


def _runs() -> list[Case]:
    out = []
    for classes in (64, 10):
        variant = f"n_classes={classes}"
        chance = 1 - 1 / classes
        out += [
            Case("scaling_law", "beats chance", variant, DETECTED,
                 lambda c=classes: memory_run(0.05, c)),
            Case("scaling_law", "stuck at chance", variant, NOT,
                 lambda c=classes, e=chance: memory_run(e, c)),
            Case("scaling_law", "no population error", variant, UNDETERMINED,
                 lambda c=classes: (drop(memory_run(0.05, c)[0], "memory/population_error"),
                                    memory_run(0.05, c)[1])),
        ]
    out.append(Case("scaling_law", "chance unknown", "no n_classes", UNDETERMINED,
                    lambda: memory_run(0.05, None)))

    def classes(n):
        frame, experiment = memory_run(0.05, 64)
        experiment["task"]["n_classes"] = n
        return frame, experiment

    out += [Case("scaling_law", "chance not defined", f"n_classes={n!r}", UNDETERMINED,
                 lambda n=n: classes(n)) for n in (1, 0, "many")]
    out.append(Case("scaling_law", "only the error before training", "step 0", UNDETERMINED,
                    lambda: (memory_run(0.05, 64)[0].iloc[:1], memory_run(0.05, 64)[1])))
    return out


def _fits() -> list[Case]:
    out = []
    grids = {"d=32..512": 2.0 ** np.arange(5, 10), "d=16..512": 2.0 ** np.arange(4, 10),
             "T=256..65536": 4.0 ** np.arange(4, 9)}
    for grid, sizes in grids.items():
        for noise in (0.0, 0.02, 0.05):
            name = f"{grid}, noise={noise}"
            for family, kind, expected in (("power law", "power", DETECTED),
                                           ("exponential", "exponential", NOT),
                                           ("floor", "floor", NOT)):
                out.append(Case("scaling_law", f"fit: {family}", name, expected,
                                lambda k=kind, s=sizes, n=noise: (s, error_curve(k, s, n)),
                                judge=judge_fit))
        for n in (3, 4):
            out.append(Case("scaling_law", f"fit: {n} sizes", grid, UNDETERMINED,
                            lambda s=sizes[:n]: (s, error_curve("power", s, 0.02)),
                            judge=judge_fit))
    return out


def cases() -> list[Case]:
    """Every scaling_law case of the battery."""
    return _runs() + _fits()
