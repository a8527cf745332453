"""Run one experiment config into one run directory: build, train, judge, record."""

from __future__ import annotations

import logging
import os
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

from dynamics_lab.config import ExperimentConfig, build_config
from dynamics_lab.tracking.rundir import RunDir


@dataclass
class RunResult:
    run_dir: Path
    status: str
    verdict: dict | None
    wall_time_s: float
    error: str | None = None


def quiet_lightning() -> None:
    """Lightning's banners and tips drown the one line per run that matters."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings(
        "ignore", message=r".*(does not have many workers|LeafSpec|litlogger).*")


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


def build_measurements(config: ExperimentConfig) -> list:
    """One Lightning callback per entry of `measure:`; each class takes its config's fields."""
    from dynamics_lab.registry import MEASUREMENTS

    return [MEASUREMENTS.get(section.name)(**section.model_dump(exclude={"name"}))
            for section in config.measure.values()]


def trainer_settings(config: ExperimentConfig, device: str) -> dict:
    """Trainer arguments every run shares: step-based evaluation, no Lightning chrome."""
    t = config.trainer
    return dict(
        accelerator=device, devices=1, max_steps=t.max_steps,
        precision="64-true" if t.dtype == "float64" else "32-true",
        val_check_interval=t.eval_every, check_val_every_n_epoch=None, num_sanity_val_steps=-1,
        log_every_n_steps=t.max_steps + 1, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )


def build_trainer(config: ExperimentConfig, run: RunDir, device: str, loggers: list,
                  callbacks: list):
    """A Trainer that checkpoints (with RNG and minibatch state) every checkpoint_every steps."""
    import lightning as L

    from dynamics_lab.tracking.resume import RandomState, StepCheckpoint

    t = config.trainer
    checkpoint = StepCheckpoint(run.checkpoint_dir, t.checkpoint_every or t.max_steps, t.eval_every)
    return L.Trainer(**trainer_settings(config, device), logger=loggers,
                     callbacks=[*callbacks, RandomState(), checkpoint], default_root_dir=run.path)


def judge(config: ExperimentConfig, run: RunDir) -> dict | None:
    """The phenomenon's verdict on this run's metrics, written to verdict.json."""
    if config.phenomenon is None or not run.metrics_path.exists():
        return None
    from dynamics_lab.phenomena import detect
    from dynamics_lab.tracking.metrics import read_metrics

    verdict = detect(config.phenomenon.name, read_metrics(run.metrics_path), config).to_dict()
    run.write_verdict(verdict)
    return verdict


def execute(run: RunDir, ckpt_path: str | None = None, echo=print) -> RunResult:
    """Train the run whose config.yaml is in `run`; record status, metrics and verdict."""
    quiet_lightning()
    set_threads()
    import lightning as L

    from dynamics_lab.module import DynamicsModule
    from dynamics_lab.registry import MODELS, TASKS
    from dynamics_lab.tracking.metrics import LocalMetricsLogger
    from dynamics_lab.tracking.wandb import (
        finish_wandb,
        make_wandb_logger,
        sync_hint,
        wandb_enabled,
    )

    config = build_config(run.config())
    meta = run.meta
    run.start(config.trainer.device)
    t0 = time.time()
    wandb_logger = None
    try:
        device = resolve_device(config.trainer.device)
        run.update_meta(device=device)
        L.seed_everything(config.seed, verbose=False)
        task = TASKS.get(config.task.name)(config.task, batch_size=config.trainer.batch_size,
                                           seed=config.seed, eval_chunk=config.trainer.eval_chunk)
        task.setup()
        model = MODELS.get(config.model.name)(config.model, task.spec)
        module = DynamicsModule(model, task.spec.loss, config.optim, config.trainer.log_every)
        loggers = [LocalMetricsLogger(run.path)]
        if wandb_enabled(config.logging.wandb):
            wandb_logger, offline = make_wandb_logger(
                run.path, config.to_dict(), run_name=run.path.name, group=run.path.parent.name,
                resume_id=meta.get("wandb_id"))
            loggers.append(wandb_logger)
            # Starting the W&B run now (not lazily) puts its id in meta.json for `resume`.
            run.update_meta(wandb_id=wandb_logger.experiment.id, wandb_offline=offline)
            if offline:
                echo(sync_hint(run.path))
        trainer = build_trainer(config, run, device, loggers, build_measurements(config))
        trainer.fit(module, datamodule=task, ckpt_path=ckpt_path)
        status, error = ("diverged" if module.diverged else "completed"), None
    except KeyboardInterrupt:
        status, error = "killed", "interrupted"
    except Exception as exc:  # the run failed; record why, the sweep goes on
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        (run.path / "error.log").write_text(traceback.format_exc())
    verdict = judge(config, run) if status in ("completed", "diverged") else None
    if wandb_logger is not None:
        finish_wandb(wandb_logger, verdict, status)
    run.finish(status, error)
    return RunResult(run.path, status, verdict, time.time() - t0, error)
