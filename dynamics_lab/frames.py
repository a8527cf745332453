"""Runs on disk as pandas DataFrames, for notebooks: `load_run` and `load_sweep`.

Wide form: one row per (run, step), metric columns beside the run's identity, its config
(dotted keys, e.g. `optim.lr`), status and verdict (`verdict.*`). Long form: one row per
(run, step, metric) with a `value` column, the shape seaborn and groupby want.

    >>> import dynamics_lab
    >>> runs = dynamics_lab.load_sweep("runs/grokking/20261129-101500-ab12")
    >>> runs.groupby("optim.weight_decay")["val/acc"].max()
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd

from dynamics_lab.tracking.metrics import read_metrics
from dynamics_lab.tracking.rundir import MANIFEST, RunDir, read_json

Form = Literal["wide", "long"]


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


def run_info(run: RunDir) -> dict:
    """A run's identity, flattened config, status and verdict as one flat dict."""
    meta = run.meta
    config = {k: v for k, v in flatten(run.config()).items() if not k.startswith("sweep.")}
    verdict = {f"verdict.{k}": v for k, v in (run.verdict() or {}).items()}
    return {"run_id": run.path.name, "sweep_id": run.path.parent.name, **config,
            "status": meta.get("status"), "wall_time_s": meta.get("wall_time_s"), **verdict}


def load_run(path: Path | str, form: Form = "wide") -> pd.DataFrame:
    """One run directory's metrics joined with its config, status and verdict."""
    run = RunDir.open(path)
    metrics = (read_metrics(run.metrics_path) if run.metrics_path.exists()
               else pd.DataFrame({"step": pd.Series([], dtype="int64")}))
    info = run_info(run)
    if form == "long":
        metrics = metrics.melt(id_vars="step", var_name="metric", value_name="value")
        metrics = metrics.dropna(subset=["value"]).reset_index(drop=True)
    elif form != "wide":
        raise ValueError(f"form must be 'wide' or 'long', got {form!r}")
    ids = pd.DataFrame([info] * len(metrics), index=metrics.index,
                       columns=list(info)) if len(metrics) else pd.DataFrame(columns=list(info))
    return pd.concat([ids, metrics], axis=1)


def load_sweep(path: Path | str, form: Form = "wide") -> pd.DataFrame:
    """Every run of a sweep directory (manifest order), stacked; unreadable runs are skipped."""
    sweep_dir = Path(path)
    manifest = sweep_dir / MANIFEST
    if manifest.is_file():
        run_dirs = [sweep_dir / r["run_id"] for r in read_json(manifest).get("runs", [])]
    else:  # a folder of run directories without a manifest
        run_dirs = sorted(p.parent for p in sweep_dir.glob("*/meta.json"))
    frames = [load_run(d, form) for d in run_dirs if (d / "meta.json").is_file()]
    if not frames:
        raise FileNotFoundError(f"no runs under '{sweep_dir}'")
    return pd.concat(frames, ignore_index=True)
