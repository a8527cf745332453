"""How a run table names a run's verdict fields: `verdict/<field>`, as W&B run summaries do, in
every table alike (notebook frames, the report's tables, what figures, claims and phase maps
read), so a verdict field never collides with a config key or a metric name.

Only results/'s summary.csv shows the fields bare, as it always has: `published` writes that
form and `read_published` reads it back. Imports only pandas, so frames, report, tracking and
phenomena all name the prefix from here."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

VERDICT_PREFIX = "verdict/"
RUN_COLUMNS = ("run_id", "sweep_id", "seed", "status", "wall_time_s", "error")  # frames.run_fields
UNPUBLISHED = ("phenomenon",)  # the same in every row of a sweep: the experiment names it


def verdict_key(field: str) -> str:
    """The column (and W&B summary key) of a verdict field."""
    return VERDICT_PREFIX + field


def verdict_of(row) -> dict:
    """The verdict fields of a table row (a dict or Series) under their own names, as in
    verdict.json: what `Detector.phase_label` and a figure's step marks take."""
    return {k[len(VERDICT_PREFIX):]: v for k, v in dict(row).items()
            if isinstance(k, str) and k.startswith(VERDICT_PREFIX)}


def published(table: pd.DataFrame) -> pd.DataFrame:
    """A run table as results/'s summary.csv shows it: verdict fields bare, the phenomenon's
    name left out."""
    kept = table.drop(columns=[verdict_key(f) for f in UNPUBLISHED if verdict_key(f) in table])
    return kept.rename(columns=lambda c: c.removeprefix(VERDICT_PREFIX))


def read_published(path: Path | str) -> pd.DataFrame | None:
    """A summary.csv `published` wrote, its verdict fields back under `verdict/` (every column
    but the run's own and the dotted config keys); None without the file."""
    if not Path(path).is_file():
        return None
    table = pd.read_csv(path)
    return table.rename(columns=lambda c: c if c in RUN_COLUMNS or "." in c else verdict_key(c))
