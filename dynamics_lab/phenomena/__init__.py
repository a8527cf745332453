"""Phenomena: one package each, holding its detector (a metrics table -> a Verdict), key metric,
report figures, dashboard panels and battery cases. Detectors read only metric tables, so they
judge any run, including runs logged elsewhere (a W&B history export works as it is).

Every package here is a built-in phenomenon: importing this package imports each of them (which
registers it), so a new one is its folder alone and nothing else names it."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import pandas as pd

from dynamics_lab.phenomena.base import Detector, Outcome, Verdict
from dynamics_lab.registry import PHENOMENA, UnknownNameError
from dynamics_lab.schema import ConfigError, validate_section

for _package in pkgutil.iter_modules(__path__):
    if _package.ispkg:  # importing a phenomenon registers it
        importlib.import_module(f"{__name__}.{_package.name}")


def build(name: str, config: Any | None = None) -> Detector:
    """The named detector with its thresholds from `config`'s `phenomenon` section (when that
    section names this phenomenon or no phenomenon at all), else its defaults.

    `config` is an ExperimentConfig, a resolved config dict or None. A bad name or threshold key
    is a one-line ConfigError.
    """
    try:
        cls = PHENOMENA.get(name)
    except UnknownNameError as exc:
        raise ConfigError(f"phenomenon.name: {exc}") from None
    experiment = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
    section = dict(experiment.get("phenomenon") or {})
    if section.get("name", name) != name:
        section = {}
    section["name"] = name
    return PHENOMENA.build(validate_section(cls.Config, section, "phenomenon"))


def detect(name: str, metrics: pd.DataFrame, config: Any | None = None,
           columns: dict[str, str] | None = None) -> Verdict:
    """Judge one run's metrics table with the named phenomenon's detector.

    `columns` maps the detector's column names to the table's (`{"train/acc": "train_acc"}`); a
    W&B export's `_step` is read as the step. A column the detector needs and the table lacks
    gives an `undetermined` verdict that names it.
    """
    experiment = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
    return build(name, experiment).detect(metrics, experiment, columns)


__all__ = ["Detector", "Outcome", "Verdict", "build", "detect"]
