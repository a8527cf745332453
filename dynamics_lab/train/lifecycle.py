"""The life every run goes through around its training, for a single run and an ensemble's
members alike: claim (lock, start point), start, outcome -> Status, error.log, verdict, W&B
summary, finish, release."""

from __future__ import annotations

import contextlib
import logging
import os
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynamics_lab.config import ExperimentConfig, build_config
from dynamics_lab.registry import one_line
from dynamics_lab.tracking.checkpoint import Interrupted, clear_partial_writes
from dynamics_lab.tracking.lock import RunLock
from dynamics_lab.tracking.metrics import MetricsError, MetricsFile
from dynamics_lab.tracking.resume import ResumeError, recover_meta, start_point
from dynamics_lab.tracking.rundir import RunDir, Status
from dynamics_lab.train.resume_overrides import resume_with_overrides
from dynamics_lab.train.stopping import StopRequest


@dataclass
class RunResult:
    run_dir: Path
    status: Status
    verdict: dict | None
    wall_time_s: float
    error: str | None = None

    def line(self) -> str:
        """`run_id: status: verdict summary (or the error)`, as sweeps print it."""
        return f"{self.run_dir.name}: {self.status}: " \
               f"{(self.verdict or {}).get('summary', self.error or '')}"


def quiet_lightning() -> None:
    """Lightning's banners and tips drown the one line per run that matters."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings(
        "ignore", message=r".*(does not have many workers|LeafSpec|litlogger|srun).*")
    # Several optimizer steps per Lightning step pull batches themselves (train/steps.py).
    warnings.filterwarnings("ignore", message=r".*`dataloader_iter`.*")


def set_threads() -> None:
    """One thread per run for toy models; parallelism comes from running several runs."""
    import torch

    torch.set_num_threads(int(os.environ.get("DYNLAB_THREADS", "1")))


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("trainer.device=cuda but no CUDA device is visible; valid here: auto, cpu")
    return device


def judge(config: ExperimentConfig, run: RunDir) -> dict | None:
    """The phenomenon's verdict on this run's metrics, written to verdict.json."""
    if config.phenomenon is None or not run.metrics_path.exists():
        return None
    from dynamics_lab.phenomena import detect
    from dynamics_lab.tracking.metrics import read_metrics

    verdict = detect(config.phenomenon.name, read_metrics(run.metrics_path), config).to_dict()
    run.write_verdict(verdict)
    return verdict


class Lifecycle:
    """`with Lifecycle(runs, resume) as life:` around building and fitting; then `life.results`.

    Entering claims every run (its lock; a lost meta.json is rebuilt), picks the start point
    (`resume`: True = the last checkpoint or a ResumeError, None = the checkpoint when there is
    a sound one, False = afresh; `overrides`: resumable KEY=VALUE changes, with resume=True;
    `fits(config)` checks a checkpoint against the model) and marks the runs `running`; errors
    here propagate, one line, with nothing written. The body ends with `life.ended(diverged)`.
    An exception instead makes every run `failed` (traceback in error.log), an interruption
    `killed`; either way it stops here. On the way out finished runs are judged, the W&B run
    gets the verdict, meta.json records the ending and the locks are released. A run dir
    deleted meanwhile is not recreated: its result says so.
    """

    def __init__(self, runs: list[RunDir], resume: bool | None = False,
                 overrides: list[str] | tuple = (), fits=None, **meta):
        self.runs, self.resume, self.meta = runs, resume, meta
        self.overrides, self.fits = list(overrides), fits
        self.stop = StopRequest()
        self.checkpoint: Path | None = None
        self.configs: list[ExperimentConfig] = []
        self.statuses: list[Status] = []
        self.results: list[RunResult] = []
        self.interrupted: str | None = None
        self.wandb: dict[Path, Any] = {}  # run dir -> its W&B logger
        self._locks: list[RunLock] = []

    def __enter__(self) -> Lifecycle:
        try:
            for run in self.runs:
                self._claim(run)
            self.configs = [build_config(run.config()) for run in self.runs]
            self.checkpoint = self._start_point()
            quiet_lightning()
            set_threads()
            for run in self.runs:
                run.start(self.configs[0].trainer.device)
                if self.meta:
                    run.update_meta(**self.meta)
        except BaseException:
            self._release()
            raise
        self.t0 = time.time()
        self.stop.install()
        return self

    def _claim(self, run: RunDir) -> None:
        if not run.config_path.is_file() and not run.meta_path.is_file():
            RunDir.open(run.path)  # raises the right one-line error; nothing is written
        lock = RunLock(run.path)
        lock.acquire()
        self._locks.append(lock)
        recover_meta(run)
        RunDir.open(run.path)
        if run.checkpoint_dir.is_dir():
            clear_partial_writes(run.checkpoint_dir)  # a write killed midway

    def _start_point(self) -> Path | None:
        single = len(self.runs) == 1 and self.resume is not False
        if self.overrides and not (single and self.resume):
            raise ResumeError("overrides apply only when resuming one run")
        for run in self.runs:
            if run.status.finished and not self.overrides:
                raise ResumeError(f"'{run.path}' already ended ({run.status}); nothing to run")
        fits = self.fits(self.configs[0]) if self.fits and single else None
        if self.overrides:
            self.configs[0], path = resume_with_overrides(self.runs[0], self.overrides,
                                                          self.fits)
            return path
        if single:
            return start_point(self.runs[0], required=bool(self.resume), fits=fits)
        from dynamics_lab.train.ensemble_checkpoint import ensemble_start

        return ensemble_start(self.runs, self.resume)

    def _release(self) -> None:
        for lock in self._locks:
            lock.release()
        self._locks = []

    def resolve_device(self, device: str) -> str:
        """The device these runs train on (recorded in their meta.json)."""
        device = resolve_device(device)
        for run in self.runs:
            run.update_meta(device=device)
        return device

    def wandb_loggers(self, echo=print, member: int = 0) -> list:
        """Run `member`'s W&B logger when W&B is on ([] otherwise), finished on the way out."""
        from dynamics_lab.tracking.wandb import make_wandb_logger, sync_hint, wandb_enabled

        run, config = self.runs[member], self.configs[member]
        if not wandb_enabled(config.logging.wandb):
            return []
        logger, offline = make_wandb_logger(
            run.path, config.to_dict(), run_name=run.path.name, group=run.path.parent.name,
            resume_id=run.meta.get("wandb_id"))
        self.wandb[run.path] = logger
        # Starting the W&B run now (not lazily) puts its id in meta.json for `resume`.
        run.update_meta(wandb_id=logger.experiment.id, wandb_offline=offline)
        if offline and member == 0:
            echo(sync_hint(run.path.parent if len(self.runs) > 1 else run.path,
                           "*/wandb/offline-run-*" if len(self.runs) > 1
                           else "wandb/offline-run-*"))
        return [logger]

    def ended(self, diverged: list[bool]) -> None:
        """Training returned: each run completed, or diverged (a non-finite loss)."""
        self.statuses = [Status.DIVERGED if d else Status.COMPLETED for d in diverged]

    def __exit__(self, exc_type, exc, tb) -> bool:
        signal_name = self.stop.requested
        # While the ending is written, one more signal is noted; a second one still stops.
        self.stop.requested, self.stop.deferring = None, True
        try:
            error = self._outcome(exc, signal_name)
            for run, config, status in zip(self.runs, self.configs, self.statuses):
                self.results.append(self._finish(run, config, status, error))
        finally:
            self.stop.restore()
            self._release()
        return True

    def _outcome(self, exc: BaseException | None, signal_name: str | None) -> str | None:
        """Statuses from how the body ended; the error line, if any."""
        if exc is None and len(self.statuses) == len(self.runs):
            return None
        if exc is None:
            exc = RuntimeError("training ended without a status (Lifecycle.ended not called)")
        if isinstance(exc, Exception):  # the run failed; record why, the sweep goes on
            self.statuses = [Status.FAILED] * len(self.runs)
            for run in self.runs:
                with contextlib.suppress(OSError):  # a full disk, a deleted run dir
                    (run.path / "error.log").write_text("".join(traceback.format_exception(exc)))
            return one_line(exc)
        # Ctrl-C or SIGTERM (ours; or Lightning's exit on SIGTERM before training started)
        self.interrupted = signal_name or type(exc).__name__
        self.statuses = [Status.KILLED] * len(self.runs)
        where = f": {exc}" if isinstance(exc, Interrupted) and str(exc) != signal_name else ""
        return f"interrupted by {self.interrupted}{where}"

    def _finish(self, run: RunDir, config: ExperimentConfig, status: Status,
                error: str | None) -> RunResult:
        wandb = self.wandb.get(run.path)
        if not run.path.is_dir():  # deleted while it trained: recreate nothing
            if wandb is not None:
                from dynamics_lab.tracking.wandb import finish_wandb

                finish_wandb(wandb, None, Status.FAILED)
            return RunResult(run.path, Status.FAILED, None, time.time() - self.t0,
                             f"'{run.path}' was deleted while the run trained; nothing recorded")
        verdict = None
        if run.metrics_path.exists():
            with contextlib.suppress(MetricsError):
                MetricsFile(run.metrics_path).compact()  # one row per step
        if status.finished:
            try:
                verdict = judge(config, run)
            except Exception as exc:  # a broken detector fails the run, visibly
                status, error = Status.FAILED, f"verdict: {one_line(exc)}"
                with contextlib.suppress(OSError):
                    (run.path / "error.log").write_text(traceback.format_exc())
        if wandb is not None:
            from dynamics_lab.tracking.wandb import finish_wandb

            finish_wandb(wandb, verdict, status)
        run.finish(status, error)
        return RunResult(run.path, status, verdict, time.time() - self.t0, error)
