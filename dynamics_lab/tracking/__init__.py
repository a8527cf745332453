"""Where runs land: run directories, crash-safe local metrics, W&B wiring."""

from dynamics_lab.tracking.metrics import LocalMetricsLogger, MetricsFile, read_metrics
from dynamics_lab.tracking.rundir import RunDir, RunDirError, default_runs_root, new_sweep_id

__all__ = [
    "LocalMetricsLogger",
    "MetricsFile",
    "RunDir",
    "RunDirError",
    "default_runs_root",
    "new_sweep_id",
    "read_metrics",
]
