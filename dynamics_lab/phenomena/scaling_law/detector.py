"""The per-run `scaling_law` detector: one point of the law, the run's final population errors at
its (d, T). The law itself (power-law fits across the sweep) is in fits.py and the report.

Detected when the trained memory's error is below (1 - margin) x chance (it stored something);
undetermined when the population error was not logged after step 0 (the error before training
says nothing of what was stored) or chance is unknown (no task.n_classes of at least 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from pydantic import Field

from dynamics_lab.metric_names import Memory
from dynamics_lab.phenomena.base import Detector, Outcome, Verdict, format_step
from dynamics_lab.phenomena.curves import series
from dynamics_lab.phenomena.dashboard import KeyMetric, Panel, verdict_key
from dynamics_lab.phenomena.scaling_law.fits import ESTIMATORS
from dynamics_lab.registry import PHENOMENA
from dynamics_lab.schema import NamedSection

ERROR = Memory.POPULATION_ERROR


def error_column(estimator: str) -> str:
    return ERROR if estimator == "trained" else f"{ERROR}_{estimator}"


class ScalingLawConfig(NamedSection):
    fit_d: tuple[float, float] | None = None  # d range of the memory-limited fit (report)
    fit_T: tuple[float, float] | None = None  # T range of the data-limited fit (report)
    confidence: float = Field(0.95, gt=0, lt=1)
    margin: float = Field(0.05, ge=0, lt=1)  # "beats chance" = error < (1 - margin) x chance


@dataclass
class ScalingLawVerdict(Verdict):
    d: int | None = None
    T: int | None = None
    alpha: float | None = None
    chance: float | None = None  # error of a uniform guess, 1 - 1/M
    error_trained: float | None = None
    error_top_k: float | None = None
    error_seen: float | None = None
    error_frequency: float | None = None


@PHENOMENA.register("scaling_law")
class ScalingLaw(Detector):
    """One point of the scaling law: the run's final population errors at its (d, T)."""

    Config = ScalingLawConfig
    verdict_type = ScalingLawVerdict
    key_metric = KeyMetric("error_trained", "minimize")
    panels = (
        Panel("population error of the trained memory", y=(ERROR,), log_y=True),
        Panel("error vs memory size d, one series per T", kind="scatter", x="model.dim",
              y=(verdict_key("error_trained"),), group_by=("task.n_samples",), log_x=True,
              log_y=True),
        Panel("error vs data size T, one series per d", kind="scatter", x="task.n_samples",
              y=(verdict_key("error_trained"),), group_by=("model.dim",), log_x=True,
              log_y=True),
    )

    def required(self, experiment: dict) -> list:
        return [ERROR]

    def judge(self, metrics: pd.DataFrame, experiment: dict) -> Verdict:
        task, model = experiment.get("task") or {}, experiment.get("model") or {}
        d, T, alpha = model.get("dim"), task.get("n_samples"), task.get("alpha")
        chance = _chance(task.get("n_classes"))
        errors = {}
        for e in ESTIMATORS:
            _, values = series(metrics, error_column(e))
            errors[f"error_{e}"] = float(values[-1]) if len(values) else None
        fields = dict(d=d, T=T, alpha=alpha, chance=chance, **errors)
        trained = errors["error_trained"]
        steps, _ = series(metrics, ERROR)
        if not len(steps) or steps[-1] <= 0:
            return self.undetermined(f"{ERROR} not logged as a number after step 0", **fields)
        where = f"d={d}, T={format_step(T)}" if d and T else "this run"
        others = ", ".join(f"{e} {errors[f'error_{e}']:.4g}" for e in ESTIMATORS
                           if e != "trained" and errors[f"error_{e}"] is not None)
        summary = (f"{where}: population error {trained:.4g} (trained)"
                   + (f"; closed-form {others}" if others else "")
                   + (f" (chance {chance:.3g})" if chance is not None else ""))
        if chance is None:
            return self.undetermined(f"chance level unknown (task.n_classes="
                                     f"{task.get('n_classes')!r}, need an integer >= 2)",
                                     **fields)
        bar = (1 - self.config.margin) * chance
        if trained < bar:
            return self.verdict(Outcome.DETECTED, f"trained error {trained:.4g} < {bar:.3g} "
                                f"((1 - {self.config.margin}) x chance)", summary, **fields)
        return self.verdict(Outcome.NOT_DETECTED, f"trained error {trained:.4g} is not below "
                            f"{bar:.3g}: the memory stored nothing", summary, **fields)

    def figures(self, view) -> list:
        from dynamics_lab.phenomena.scaling_law.figures import write_figures

        return write_figures(view)


def _chance(n_classes) -> float | None:
    """The error of a uniform guess, 1 - 1/M, for M >= 2 classes; None otherwise."""
    try:
        m = float(n_classes)
    except (TypeError, ValueError):
        return None
    return 1 - 1 / m if m >= 2 and m.is_integer() else None
