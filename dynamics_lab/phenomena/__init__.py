"""Detectors: a metrics DataFrame of one run -> a Verdict. They read only metric tables."""

from __future__ import annotations

from typing import Any

import pandas as pd

# Importing each detector's module registers it.
from dynamics_lab.phenomena import (  # noqa: F401
    edge_of_stability,
    grokking,
    lazy_rich,
    parity,
    scaling,
    stepwise,
)
from dynamics_lab.phenomena.base import Detector, Verdict
from dynamics_lab.registry import PHENOMENA


def detect(name: str, metrics: pd.DataFrame, config: Any | None = None) -> Verdict:
    """Run the named detector; `config` is an ExperimentConfig, a resolved config dict or None.

    The detector's thresholds come from the config's `phenomenon` section when it names the
    same phenomenon, else from the detector's defaults.
    """
    detector_cls = PHENOMENA.get(name)
    experiment = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
    section = experiment.get("phenomenon") or {}
    if section.get("name") != name:
        section = {"name": name}
    settings = detector_cls.Config.model_validate(section)
    return detector_cls().detect(metrics, settings, experiment)


__all__ = ["Detector", "Verdict", "detect"]
