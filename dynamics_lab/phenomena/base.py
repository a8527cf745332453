"""Verdicts and the detector interface: a metrics table (and the run's config) in, a verdict out.

A verdict has one of three outcomes. `undetermined` means the table cannot answer the question
(a column is missing, too few evaluations, the run stopped too early); a detector says so rather
than guess. `detected` stays a bool (True only for `detected`) for verdict.json and W&B readers.
"""

from __future__ import annotations

import importlib
import math
import sys
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from dynamics_lab.phenomena.dashboard import KeyMetric, Panel
from dynamics_lab.schema import NamedSection

STEP = "step"
WANDB_STEP = "_step"  # the step column of a W&B history export


class Outcome(str, Enum):
    """What a detector concluded; compares equal to its string, so JSON stays plain text."""

    DETECTED = "detected"
    NOT_DETECTED = "not_detected"
    UNDETERMINED = "undetermined"

    def __str__(self) -> str:
        return self.value


@dataclass
class Verdict:
    """What a detector concluded and why; subclasses add the phenomenon's own fields."""

    phenomenon: str
    outcome: Outcome
    reason: str  # one line: the rule that decided the outcome
    summary: str = ""  # one line for people: what happened and when

    @property
    def detected(self) -> bool:
        return self.outcome == Outcome.DETECTED

    def to_dict(self) -> dict[str, Any]:
        fields = {k: _plain(v) for k, v in asdict(self).items()}
        head = {k: fields.pop(k) for k in ("phenomenon", "outcome")}
        return {**head, "detected": self.detected, **fields}


def _plain(value: Any) -> Any:
    """JSON-friendly scalars: enums and numpy types to Python, NaN to None."""
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


Required = str | tuple[str, ...]  # a column, or alternatives of which one must be logged
FRACTION = (0.0, 1.0)  # Detector.field_ranges: a share of something
NONNEGATIVE = (0.0, math.inf)  # ... a count, a step, a ratio of positive quantities


class Detector:
    """A phenomenon: its detector (`Config` holds the thresholds, `judge` reads one run), the key
    metric a sweep sorts by, the report figures and the dashboard panels.

    Built like every plugin, `PHENOMENA.build(section)` == `cls(section)`; `detect(metrics,
    experiment)` normalises the table (step column, column names), returns `undetermined` when a
    required column is missing, and hands the rest to `judge`.
    """

    Config: ClassVar[type[NamedSection]]
    verdict_type: ClassVar[type[Verdict]] = Verdict
    key_metric: ClassVar[KeyMetric] = KeyMetric("detected")
    panels: ClassVar[tuple[Panel, ...]] = ()
    # The values a bounded verdict field can take (a fraction in [0, 1], a count or a ratio >= 0):
    # its interval across seeds is cut to them, where a t-interval on three seeds would not be.
    field_ranges: ClassVar[dict[str, tuple[float, float]]] = {}

    def __init__(self, config: NamedSection | None = None):
        self.config = config if config is not None else self.Config()

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def interval_fields(self) -> tuple[str, ...]:
        """Verdict fields a sweep report aggregates over seeds (mean and 95% interval)."""
        return (self.key_metric.field,)

    def required(self, experiment: dict) -> list[Required]:
        """Columns without which no verdict is possible."""
        return []

    def detect(self, metrics: pd.DataFrame, experiment: dict | None = None,
               columns: dict[str, str] | None = None) -> Verdict:
        """The verdict on one run's metrics; `columns` maps our names to the table's."""
        experiment = experiment or {}
        frame = normalise(metrics, columns)
        if STEP not in frame:
            return self.undetermined(f"no step column ({STEP} or {WANDB_STEP})")
        if len(frame) and frame[STEP].iloc[0] < 0:
            return self.undetermined(f"negative steps (from {frame[STEP].iloc[0]:g}): a step "
                                     "counts optimizer updates")
        missing = [_show(r) for r in self.required(experiment) if not _logged(frame, r)]
        if missing:
            return self.undetermined(f"{', '.join(missing)} not logged")
        return self.judge(frame, experiment)

    def judge(self, metrics: pd.DataFrame, experiment: dict) -> Verdict:
        raise TypeError(f"{type(self).__name__} must define judge()")

    def verdict(self, outcome: Outcome, reason: str, summary: str = "", **fields) -> Verdict:
        return self.verdict_type(self.name, outcome, reason, summary or reason, **fields)

    def undetermined(self, reason: str, **fields) -> Verdict:
        return self.verdict(Outcome.UNDETERMINED, reason, f"undetermined: {reason}", **fields)

    def figures(self, view) -> list:
        """Write the report figures of a sweep (a `SweepView`); the paths written."""
        return []

    def sweep_lines(self, view) -> list[str]:
        """Lines the report prints about the sweep as a whole (a fit across the grid, ...)."""
        return []

    @property
    def phases(self) -> tuple[str, ...]:
        """The phase labels of a `dynlab phase` map: PHASES of the `phase.py` beside the
        detector, else the positive and negative outcomes."""
        module = phase_module(type(self))
        return (tuple(module.PHASES) if module else
                (Outcome.DETECTED.value, Outcome.NOT_DETECTED.value))

    @classmethod
    def cases(cls) -> list:
        """The detector battery's cases for this phenomenon (phenomena/battery.py `Case`s):
        `cases()` of the `cases.py` beside the detector, else none. A detector kept elsewhere
        overrides this."""
        module = sibling_module(cls, "cases")
        return list(module.cases()) if module else []

    def phase_label(self, verdict: dict) -> str:
        """One run's phase from its verdict (a verdict.json dict): `phase_label(verdict,
        config)` of the `phase.py` beside the detector, else the verdict's outcome."""
        module = phase_module(type(self))
        if module is None:
            return str(verdict.get("outcome") or Outcome.UNDETERMINED.value)
        return module.phase_label(verdict, self.config)


def sibling_module(cls: type, leaf: str):
    """The module `leaf` of the package that defines a detector class (the package itself when
    the class is defined in its `__init__`), or None where there is none."""
    module = sys.modules.get(cls.__module__)
    package = (cls.__module__ if hasattr(module, "__path__")
               else cls.__module__.rpartition(".")[0])
    if not package:
        return None
    try:
        return importlib.import_module(f"{package}.{leaf}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{package}.{leaf}":
            return None
        raise


def phase_module(cls: type):
    """The `phase` module of the package that defines a detector class, or None."""
    return sibling_module(cls, "phase")


def normalise(metrics: pd.DataFrame, columns: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per step, in step order, in our column names (renamed from `columns`' values;
    `_step` read as `step`), every column a number.

    As metrics.csv is read: rows without a finite step are dropped, and rows that share a step
    merge, the last logged value of each metric winning (appended merges, a resumed run, a
    table concatenated twice). A cell that is not a number (a string, a W&B media dict) reads
    as not logged; +-inf stays, as logged (a diverged loss).
    """
    frame = metrics.rename(columns={theirs: ours for ours, theirs in (columns or {}).items()})
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    frame = frame.loc[:, ~frame.columns.duplicated(keep="last")]
    if STEP not in frame and WANDB_STEP in frame:
        frame = frame.rename(columns={WANDB_STEP: STEP})
    if STEP not in frame:
        return frame
    frame = frame.apply(_numbers)
    frame = frame[np.isfinite(frame[STEP].to_numpy(float))]
    if frame[STEP].duplicated().any():
        frame = frame.groupby(STEP, as_index=False, sort=False).last()
    return frame.sort_values(STEP, kind="stable").reset_index(drop=True)


def _numbers(column: pd.Series) -> pd.Series:
    if is_numeric_dtype(column) and not is_bool_dtype(column):
        return column.astype(float)
    return pd.to_numeric(column, errors="coerce").astype(float)


def _logged(frame: pd.DataFrame, required: Required) -> bool:
    names = (required,) if isinstance(required, str) else required
    return any(name in frame and frame[name].notna().any() for name in names)


def _show(required: Required) -> str:
    return required if isinstance(required, str) else " or ".join(required)


def format_step(step: float | None) -> str:
    """Thousands separated by a thin space, as in '4 200'."""
    return "never" if step is None else f"{round(step):,}".replace(",", " ")
