"""Two sweeps side by side: per grid point, how many seeds showed the phenomenon and the mean of
each numeric verdict field, one column per sweep (`compare(a, b)`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dynamics_lab.frames import VERDICT, load_sweep

Sweep = Path | str | pd.DataFrame
DETECTED = "detected"


def runs_table(sweep: Sweep) -> pd.DataFrame:
    """One row per run of a sweep (a directory, or a frame from `load_sweep`), metrics dropped."""
    frame = load_sweep(sweep) if isinstance(sweep, (str, Path)) else sweep
    keep = [c for c in frame.columns if c.startswith(VERDICT) or c in _id_columns(frame)]
    return frame.drop_duplicates("run_id")[keep].reset_index(drop=True)


def _id_columns(frame: pd.DataFrame) -> list[str]:
    """Identity and config columns: those that hold one value per run (not metrics)."""
    return [c for c in frame.columns if "/" not in c and c != "step"]


def _summary(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per grid point: runs, seeds detected, and the mean of each numeric verdict field."""
    numeric = [c for c in runs.columns if c.startswith(VERDICT)
               and pd.api.types.is_numeric_dtype(runs[c])
               and not pd.api.types.is_bool_dtype(runs[c]) and runs[c].notna().any()]
    detected = (runs[VERDICT + "outcome"].eq(DETECTED) if VERDICT + "outcome" in runs
                else runs.get(VERDICT + DETECTED, pd.Series(False, index=runs.index)).fillna(False))
    grouped = runs.assign(_detected=detected.astype(int)).groupby(keys, dropna=False) if keys \
        else runs.assign(_detected=detected.astype(int), _all="all").groupby("_all")
    out = grouped.agg(runs=("run_id", "size"), detected=("_detected", "sum"),
                      **{c[len(VERDICT):]: (c, "mean") for c in numeric})
    out["seeds"] = out["detected"].astype(str) + "/" + out["runs"].astype(str)
    return out


def compare(a: Sweep, b: Sweep, labels: tuple[str, str] | None = None) -> pd.DataFrame:
    """Two sweeps' verdicts per grid point (the swept keys both share), side by side: for each
    field (`seeds` as "k/n detected", then the mean of each numeric verdict field) a column per
    sweep, labelled by sweep id (or `labels`). A grid point only one sweep ran shows NaN in the
    other's column."""
    tables = [runs_table(a), runs_table(b)]
    if labels is None:
        ids = [str(t["sweep_id"].iloc[0]) if len(t) and "sweep_id" in t else "" for t in tables]
        labels = (ids[0], ids[1]) if ids[0] != ids[1] else ("a", "b")
    swept = [set(_swept(t)) for t in tables]
    keys = [k for k in _swept(tables[0]) if k in swept[1]]
    parts = [_summary(t, keys) for t in tables]
    fields = ["seeds", *[c for c in dict.fromkeys([*parts[0].columns, *parts[1].columns])
                         if c not in ("seeds", "runs", "detected")]]
    joined = pd.concat([p.reindex(columns=fields) for p in parts], axis=1, keys=list(labels))
    return joined.swaplevel(axis=1).reindex(columns=pd.MultiIndex.from_product(
        [fields, list(labels)]))


def _swept(runs: pd.DataFrame) -> list[str]:
    """Config columns that vary across the runs, seed excluded (the sweep's grid keys)."""
    skip = {"run_id", "sweep_id", "seed", "status", "wall_time_s"}
    return [c for c in _id_columns(runs) if c not in skip and not c.startswith(VERDICT)
            and runs[c].map(repr).nunique() > 1]
