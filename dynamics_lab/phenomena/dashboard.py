"""What a phenomenon shows besides its verdict, as plain data: the key metric a sweep sorts by,
and dashboard panels that `dynlab dashboard` turns into a W&B workspace.

A panel names keys, not widgets, so any front end can draw it:
- `line`: metric curves against `x` (the training step, `STEP_METRIC`, by default; W&B's own
  `_step` counts history rows, several per training step), one line per run, runs grouped
  (and averaged over seeds) by the config keys in `group_by`; `SWEPT` stands for the sweep's grid
  keys, `swept_key(i)` for its i-th key. A y key ending in `*` stands for every logged key with
  that prefix (`modes/strength_*` -> `modes/strength_0`, `modes/strength_1`, ...).
- `scatter`: one point per run from its summary: `x` and `y` are config keys or verdict fields
  (`verdict/<field>`), `color` colours the points (the phase diagram of a two-key grid).

A verdict field is `verdict/<field>` (`verdict_key`) in a W&B run summary and in every run
table alike (phenomena/columns.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from dynamics_lab.phenomena.columns import VERDICT_PREFIX, verdict_key, verdict_of

SWEPT = "$swept"  # in group_by: the sweep's grid keys
STEP_METRIC = "trainer/global_step"  # the training step in W&B history (Lightning's name)


@dataclass(frozen=True)
class KeyMetric:
    """The verdict field a sweep is ranked by, and whether more is better."""

    field: str
    goal: Literal["maximize", "minimize"] = "maximize"

    @property
    def name(self) -> str:
        """The key in a W&B run summary."""
        return verdict_key(self.field)


@dataclass(frozen=True)
class Panel:
    """One dashboard panel (module docstring)."""

    title: str
    y: tuple[str, ...]
    x: str = STEP_METRIC
    kind: Literal["line", "scatter"] = "line"
    group_by: tuple[str, ...] = (SWEPT,)
    color: str | None = None
    log_x: bool = False
    log_y: bool = False

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def swept_key(index: int) -> str:
    """Stands for the sweep's index-th grid key (resolved when the dashboard is made)."""
    return f"{SWEPT}[{index}]"


__all__ = ["STEP_METRIC", "SWEPT", "VERDICT_PREFIX", "KeyMetric", "Panel", "swept_key",
           "verdict_key", "verdict_of"]
