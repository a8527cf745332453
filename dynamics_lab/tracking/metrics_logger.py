"""The Lightning logger that writes a run's metrics.csv (`MetricsFile`) as it trains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from dynamics_lab.tracking.metrics import STEP, MetricsFile


class LocalMetricsLogger(Logger):
    """A Lightning logger writing `metrics.csv` into a run directory; `latest` holds the last
    value of every metric (what a progress line shows)."""

    def __init__(self, run_dir: Path | str):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.file = MetricsFile(self.run_dir / "metrics.csv")
        self.latest: dict[str, float] = {k: v for k, v in (self.file.last or {}).items()
                                         if k != STEP and v == v}  # v == v: not NaN

    @property
    def name(self) -> str:
        return "local"

    @property
    def version(self) -> str:
        return self.run_dir.name

    @property
    def save_dir(self) -> str:
        return str(self.run_dir)

    @property
    def experiment(self) -> MetricsFile:
        return self.file

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The resolved config is already in config.yaml."""

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.file.compact()

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        values = {k: float(v) for k, v in metrics.items() if k != "epoch"}
        if values:
            self.file.log(values, step=int(step if step is not None else -1))
            self.latest.update(values)
