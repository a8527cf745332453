"""Runs on disk as pandas DataFrames, for notebooks: `load_run`, `load_sweep`, `load_sweeps`.

Wide form: one row per (run, step), metric columns beside the run's identity, the swept config
keys (dotted, e.g. `optim.weight_decay`), seed, status and verdict (`verdict/<field>`, as in the
runs' W&B summaries; typed: numbers are numbers, flags are booleans). `config=True` adds every
config key. Long form: one row per (run, step, metric) with a `value` column, the shape seaborn
and groupby want. Metrics come from metrics.parquet when the run wrote it. Nothing here imports
torch or Lightning.

    >>> import dynamics_lab
    >>> runs = dynamics_lab.load_sweep("runs/grokking/20261129-101500-ab12")
    >>> runs.groupby("optim.weight_decay")["val/acc"].max()

`run_row` is the one reader of a run's row, used here, by the report's tables (report/tables.py)
and so by the phenomena's figures, claims and phase maps and the report's W&B table: every one
of them reads a verdict field as `verdict/<field>` (phenomena/columns.py), a name no config key
or metric name can take. Only results/'s summary.csv names them bare (`columns.published`).
"""

from __future__ import annotations

import glob
import warnings
from pathlib import Path
from typing import Literal

import pandas as pd

from dynamics_lab.phenomena.columns import VERDICT_PREFIX, verdict_key
from dynamics_lab.tracking.metrics import MetricsError, read_run_metrics
from dynamics_lab.tracking.rundir import MANIFEST, RunDir, RunDirError, read_json

Form = Literal["wide", "long"]
VERDICT = VERDICT_PREFIX  # the verdict fields' columns, as W&B run summaries name them
IDENTITY = ("run_id", "sweep_id")
RUN_FIELDS = ("seed", "status", "wall_time_s")
# Outcome values (phenomena/base.py) of a verdict written before `undetermined` existed.
OUTCOMES = ("detected", "not_detected")


class SkippedRunWarning(UserWarning):
    """A run directory that could not be read (corrupt metrics, missing config) was left out."""


def flatten(tree: dict, prefix: str = "") -> dict:
    """{'optim': {'lr': 0.1}} -> {'optim.lr': 0.1}; lists stay values."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def swept_keys(sweep_dir: Path | str) -> list[str]:
    """The grid keys of the sweep directory's manifest ([] without one)."""
    try:
        return list(read_json(Path(sweep_dir) / MANIFEST).get("grid") or {})
    except RunDirError:
        return []


def run_fields(run: RunDir, values: dict) -> dict:
    """A run's identity, the config `values` given for it, seed, status, wall time and error."""
    meta = run.meta
    row = {"run_id": run.path.name, "sweep_id": run.path.parent.name, **values}
    row.setdefault("seed", meta.get("seed"))
    row.update(status=meta.get("status"), wall_time_s=meta.get("wall_time_s"),
               error=meta.get("error"))
    return row


def verdict_fields(run: RunDir) -> dict:
    """verdict.json's fields ({} without one); a verdict written before verdicts had three
    outcomes gets its `outcome` from `detected`."""
    verdict = run.verdict() or {}
    if verdict and "outcome" not in verdict:
        verdict["outcome"] = OUTCOMES[0] if verdict.get("detected") else OUTCOMES[1]
    return verdict


def run_row(run: RunDir, values: dict) -> dict:
    """A run's row: its fields (`run_fields`) with the config `values` given for it, and its
    verdict fields as `verdict/<field>`."""
    return {**run_fields(run, values),
            **{verdict_key(k): v for k, v in verdict_fields(run).items()}}


def run_info(run: RunDir, keys: list[str] | None = None) -> dict:
    """A run's row (`run_row`) with its config: only `keys` when given, every key when None."""
    config = {k: v for k, v in flatten(run.config()).items() if not k.startswith("sweep.")}
    if keys is not None:
        config = {k: config.get(k) for k in keys if k != "seed"}
    seed = {"seed": run.meta.get("seed", config.pop("seed", None))}
    return run_row(run, {**config, **seed})


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Verdict columns with a numeric dtype when every value is a number (missing as NaN), and
    `boolean` when every value is a flag; text and lists stay objects."""
    for column in [c for c in frame.columns if c.startswith(VERDICT) or c in RUN_FIELDS]:
        values = frame[column]
        if values.dtype != object:
            continue
        present = values.dropna()
        if not len(present):
            frame[column] = values.astype(float) if column.startswith(VERDICT) else values
        elif all(isinstance(v, bool) for v in present):
            frame[column] = values.astype("boolean")
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            frame[column] = pd.to_numeric(values)
    return frame


def load_run(path: Path | str, form: Form = "wide", config: bool = False) -> pd.DataFrame:
    """One run directory's metrics joined with its swept keys (every config key with
    `config=True`), seed, status and verdict."""
    run = RunDir.open(path)
    keys = None if config else swept_keys(run.path.parent)
    return typed(_run_frame(run, form, keys))


def _run_frame(run: RunDir, form: Form, keys: list[str] | None) -> pd.DataFrame:
    if form not in ("wide", "long"):
        raise ValueError(f"form must be 'wide' or 'long', got {form!r}")
    present = run.metrics_path.exists() or run.parquet_path.exists()
    metrics = (read_run_metrics(run.path) if present
               else pd.DataFrame({"step": pd.Series([], dtype="int64")}))
    info = run_info(run, keys)
    if form == "long":
        metrics = metrics.melt(id_vars="step", var_name="metric", value_name="value")
        metrics = metrics.dropna(subset=["value"]).reset_index(drop=True)
    ids = pd.DataFrame([info] * len(metrics), index=metrics.index,
                       columns=list(info)) if len(metrics) else pd.DataFrame(columns=list(info))
    return pd.concat([ids, metrics], axis=1)


def _run_dirs(sweep_dir: Path) -> list[Path]:
    """The sweep's run directories in manifest order (a folder of runs without one: sorted)."""
    manifest = sweep_dir / MANIFEST
    if manifest.is_file():
        try:
            return [sweep_dir / r["run_id"] for r in read_json(manifest).get("runs", [])]
        except (RunDirError, KeyError, TypeError) as exc:
            warnings.warn(f"{manifest}: {exc}; reading its run directories instead",
                          SkippedRunWarning, stacklevel=3)
    return sorted(p.parent for p in sweep_dir.glob("*/meta.json"))


def _sweep_frames(sweep_dir: Path, form: Form, config: bool) -> list[pd.DataFrame]:
    keys = None if config else swept_keys(sweep_dir)
    frames = []
    for run_dir in _run_dirs(sweep_dir):
        if not (run_dir / "meta.json").is_file():
            continue  # listed but not started (or its meta.json is lost)
        try:
            frames.append(_run_frame(RunDir.open(run_dir), form, keys))
        except (RunDirError, MetricsError, OSError) as exc:
            message = " ".join(str(exc).split())  # one line, whatever the cause
            warnings.warn(f"skipping run {run_dir.name}: {message}", SkippedRunWarning,
                          stacklevel=4)
    return frames


def find_sweeps(root: Path | str) -> list[Path]:
    """Sweep directories (holding a manifest) at or under `root`, oldest first."""
    root = Path(root)
    if (root / MANIFEST).is_file():
        return [root]
    return sorted((p.parent for p in root.rglob(MANIFEST)), key=lambda p: p.name)


def load_sweep(path: Path | str, form: Form = "wide", config: bool = False) -> pd.DataFrame:
    """Every run of one sweep directory (manifest order), stacked. A run that cannot be read (a
    corrupt metrics file, a missing config.yaml) is skipped with a SkippedRunWarning."""
    sweep_dir = Path(path)
    frames = _sweep_frames(sweep_dir, form, config)
    if not frames:
        below = [] if (sweep_dir / MANIFEST).is_file() else find_sweeps(sweep_dir)
        if below:
            raise FileNotFoundError(
                f"'{sweep_dir}' holds {len(below)} sweep(s), not runs: "
                f"dynamics_lab.load_sweeps('{sweep_dir}') loads them as one table")
        raise FileNotFoundError(f"no runs under '{sweep_dir}'")
    return typed(pd.concat(frames, ignore_index=True))


def load_sweeps(path_or_glob: Path | str, form: Form = "wide",
                config: bool = False) -> pd.DataFrame:
    """Many sweeps as one table with a `sweep_id` column: every sweep at or under a directory
    (`runs/grokking`), or under each directory a glob matches (`runs/*/2026*`)."""
    pattern = str(path_or_glob)
    roots = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    sweeps = list(dict.fromkeys(s for r in roots if Path(r).is_dir() for s in find_sweeps(r)))
    frames = [f for s in sweeps for f in _sweep_frames(s, form, config)]
    if not frames:
        raise FileNotFoundError(f"no sweeps with readable runs at '{pattern}'")
    return typed(pd.concat(frames, ignore_index=True))
