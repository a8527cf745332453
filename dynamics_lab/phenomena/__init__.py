"""Detectors: a metrics DataFrame of one run -> a Verdict. They read only metric tables."""

from __future__ import annotations

from typing import Any, Optional

import pandas as pd

from dynamics_lab.phenomena.base import Detector, Verdict
from dynamics_lab.registry import PHENOMENA

from dynamics_lab.phenomena import grokking  # noqa: E402,F401  (registers the detector)
from dynamics_lab.phenomena import lazy_rich  # noqa: E402,F401
from dynamics_lab.phenomena import parity  # noqa: E402,F401
from dynamics_lab.phenomena import edge_of_stability  # noqa: E402,F401
from dynamics_lab.phenomena import stepwise  # noqa: E402,F401
from dynamics_lab.phenomena import scaling  # noqa: E402,F401


def detect(name: str, metrics: pd.DataFrame, config: Optional[Any] = None) -> Verdict:
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
