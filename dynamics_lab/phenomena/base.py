"""Verdicts and the detector interface: metrics table + config in, verdict out."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from dynamics_lab.schema import NamedSection


@dataclass
class Verdict:
    """What a detector concluded; subclasses add the phenomenon's own fields."""

    phenomenon: str
    detected: bool
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in asdict(self).items()}


def _plain(value: Any) -> Any:
    """JSON-friendly scalars: numpy types to Python, NaN to None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class Detector:
    """A phenomenon detector: `Config` holds its thresholds, `detect` reads one run's metrics."""

    Config: type[NamedSection]

    def detect(self, metrics: pd.DataFrame, config: NamedSection, experiment: dict) -> Verdict:
        raise TypeError(f"{type(self).__name__} must define detect()")


def first_step(metrics: pd.DataFrame, column: str, threshold: float,
               above: bool = True) -> int | None:
    """First logged step where `column` reaches the threshold (None if never or not logged)."""
    if column not in metrics:
        return None
    values = metrics[["step", column]].dropna()
    hit = values[values[column] >= threshold] if above else values[values[column] <= threshold]
    return int(hit["step"].iloc[0]) if len(hit) else None


def last_value(metrics: pd.DataFrame, column: str) -> float | None:
    if column not in metrics:
        return None
    values = metrics[column].dropna()
    return float(values.iloc[-1]) if len(values) else None


def format_step(step: int | None) -> str:
    """Thousands separated by a thin space, as in '4 200'."""
    return "never" if step is None else f"{step:,}".replace(",", " ")
