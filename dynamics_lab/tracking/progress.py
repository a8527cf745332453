"""A run's progress: durations, ETAs, RUN_DIR/progress.json readers for `show` and sweeps.

The live line itself (`ProgressLine`, a Lightning callback) lives in `progress_line`, imported on
first use, so readers of progress stay free of Lightning."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

from dynamics_lab.tracking.rundir import RunDir, RunDirError, read_json


def format_duration(seconds: float | None) -> str:
    """`42s`, `3m05s`, `2h07m`; `?` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def eta_s(step: int, max_steps: int, start_step: int, elapsed_s: float) -> float | None:
    """Seconds left at the rate of the steps taken since `start_step` (None before any)."""
    done = step - start_step
    if done <= 0 or elapsed_s <= 0:
        return None
    return (max_steps - step) * elapsed_s / done


def seconds_since(iso: str | None) -> float:
    """Seconds since an ISO timestamp from meta.json (0 when there is none)."""
    if not iso:
        return 0.0
    return (datetime.now(timezone.utc) - datetime.fromisoformat(iso)).total_seconds()


def running_for(run: RunDir) -> str:
    """`running for 12.3s`, with `, step 400/2000, eta 41s` once the run wrote its progress."""
    line = f"running for {seconds_since(run.meta.get('started')):.1f}s"
    try:
        progress = read_json(run.progress_path)
        line += (f", step {progress['step']}/{progress['max_steps']}, "
                 f"eta {format_duration(progress.get('eta_s'))}")
    except (RunDirError, KeyError, TypeError):
        pass
    return line


def last_logged_step(metrics_csv: Path, tail_bytes: int = 4096) -> int | None:
    """The step of metrics.csv's last complete row, reading only the file's tail."""
    try:
        with open(metrics_csv, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - tail_bytes))
            lines = f.read().split(b"\n")
    except OSError:
        return None
    for line in reversed(lines[:-1]):  # the part after the last newline may be torn
        head = line.split(b",", 1)[0]
        try:
            return int(float(head))
        except ValueError:
            return None
    return None


def read_progress(run_dir: Path | str, max_steps: int | None = None) -> tuple[int, int | None]:
    """(step, max_steps) of a run in training: its progress.json, or for runs that write none
    (ensembles) the last step in metrics.csv with `max_steps` as given; (0, max_steps) before
    anything was written."""
    run = RunDir(run_dir)
    try:
        progress = read_json(run.progress_path)
        return int(progress["step"]), int(progress["max_steps"])
    except (RunDirError, KeyError, TypeError, ValueError):
        pass
    step = last_logged_step(run.metrics_path)
    return (step or 0), max_steps


def __getattr__(name: str):
    if name == "ProgressLine":  # the Lightning callback, imported only when a run needs it
        from dynamics_lab.tracking.progress_line import ProgressLine

        return ProgressLine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
