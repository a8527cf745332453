"""One run, top to bottom: config -> seed -> task + model -> Trainer -> fit -> verdict."""

from __future__ import annotations

from dynamics_lab.config import ExperimentConfig
from dynamics_lab.tracking.rundir import RunDir
from dynamics_lab.train.lifecycle import Lifecycle, RunResult
from dynamics_lab.train.stopping import StopRequest


def build_measurements(config: ExperimentConfig) -> list:
    """One Lightning callback per entry of `measure:`, each built from its own section."""
    from dynamics_lab.registry import MEASUREMENTS

    return [MEASUREMENTS.build(section) for section in config.measure.values()]


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


def built_in_dtype(model, config: ExperimentConfig):
    """The model in the run's dtype before fit: Lightning restores a checkpoint into the module
    before 64-true precision converts it, so a float32 module would round float64 weights."""
    return model.double() if config.trainer.dtype == "float64" else model


def build_trainer(config: ExperimentConfig, run: RunDir, device: str, loggers: list,
                  callbacks: list, stop: StopRequest | None = None):
    """A Trainer that checkpoints (with RNG and minibatch state) every checkpoint_every steps,
    and, given a StopRequest, stops on Ctrl-C/SIGTERM at the next checkpoint it writes."""
    import lightning as L

    from dynamics_lab.tracking.checkpoint import RandomState, StepCheckpoint

    t = config.trainer
    requested = (lambda: stop.requested is not None) if stop else (lambda: False)
    checkpoint = StepCheckpoint(run.last_checkpoint, t.checkpoint_every or t.max_steps,
                                t.eval_every, requested)
    return L.Trainer(**trainer_settings(config, device), logger=loggers,
                     callbacks=[*callbacks, RandomState(), checkpoint, *([stop] if stop else [])],
                     default_root_dir=run.path)


def weights_only() -> dict:
    """`weights_only=True` for Lightning's own checkpoint load, where its fit() takes it;
    older versions load what `load_checkpoint` has just checked."""
    import inspect

    import lightning as L

    accepts = "weights_only" in inspect.signature(L.Trainer.fit).parameters
    return {"weights_only": True} if accepts else {}


def execute(run: RunDir, resume: bool | None = False, echo=print) -> RunResult:
    """Train the run whose config.yaml is in `run` and record its status, metrics and verdict.
    `resume`: True continues from the last checkpoint, None does when it can (a sweep's retry),
    False starts afresh."""
    import lightning as L

    from dynamics_lab.registry import MODELS, TASKS
    from dynamics_lab.tracking.checkpoint import allowing_safe_globals
    from dynamics_lab.tracking.metrics import LocalMetricsLogger
    from dynamics_lab.tracking.progress import ProgressLine
    from dynamics_lab.train.module import DynamicsModule

    with Lifecycle([run], resume) as life:
        (config,) = life.configs
        if life.checkpoint:
            echo(f"resuming {run.path} from step {run.meta['resumed_at_steps'][-1]}")
        device = life.resolve_device(config.trainer.device)
        L.seed_everything(config.seed, verbose=False)
        task = TASKS.build(config.task, batch_size=config.trainer.batch_size, seed=config.seed,
                           eval_chunk=config.trainer.eval_chunk)
        task.setup()
        model = built_in_dtype(MODELS.build(config.model, task.spec), config)
        module = DynamicsModule(model, task.spec.loss, config.optim, config.trainer.log_every)
        loggers = [LocalMetricsLogger(run.path), *life.wandb_loggers(echo)]
        trainer = build_trainer(config, run, device, loggers,
                                [*build_measurements(config), ProgressLine(run.path)], life.stop)
        with life.stop.deferred(), allowing_safe_globals():
            trainer.fit(module, datamodule=task, ckpt_path=life.checkpoint, **weights_only())
        life.ended([module.diverged])
    return life.results[0]
