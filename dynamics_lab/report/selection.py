"""Which runs a report draws: one per value of the first swept axis, the rest held central."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dynamics_lab.tracking.metrics import read_metrics


def representative_runs(table: pd.DataFrame, sweep_dir: Path, axes: list[str],
                        limit: int = 5) -> dict[str, pd.DataFrame]:
    """Label -> metrics for up to `limit` runs spanning the first axis at the others' middles."""
    ok = table[table["status"].isin(["completed", "diverged"])]
    if "seed" in ok:
        ok = ok[ok["seed"] == ok["seed"].min()]
    for axis in axes[1:]:
        values = sorted(ok[axis].unique())
        if values:
            ok = ok[ok[axis] == values[len(values) // 2]]
    runs = {}
    for _, row in ok.head(limit).iterrows():
        label = ", ".join(f"{a.rsplit('.', 1)[-1]}={row[a]:g}" for a in axes) or row["run_id"]
        path = Path(sweep_dir) / row["run_id"] / "metrics.csv"
        if path.exists():
            runs[label] = read_metrics(path)
    return runs
