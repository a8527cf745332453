"""One run, top to bottom: config -> seed -> task + model -> Trainer -> fit -> verdict."""

from __future__ import annotations

from dynamics_lab.config import ExperimentConfig
from dynamics_lab.tracking.rundir import RunDir, RunDirError
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

    from dynamics_lab.tracking.checkpoint import AtomicCheckpointIO, RandomState, StepCheckpoint
    from dynamics_lab.tracking.resume import RESUMABLE_KEYS
    from dynamics_lab.tracking.rundir import config_hash

    t = config.trainer
    requested = (lambda: stop.requested is not None) if stop else (lambda: False)
    stamp = {"experiment": config.name,
             "identity": config_hash(run.config(), without=RESUMABLE_KEYS)}
    checkpoint = StepCheckpoint(run.last_checkpoint, t.checkpoint_every or t.max_steps,
                                t.eval_every, requested, stamp)
    return L.Trainer(**trainer_settings(config, device), logger=loggers,
                     callbacks=[*callbacks, RandomState(), checkpoint, *([stop] if stop else [])],
                     default_root_dir=run.path, plugins=[AtomicCheckpointIO()])


def checkpoint_fits(config: ExperimentConfig):
    """A check that a checkpoint's weights have the names and shapes of this config's model
    (None when they do, else why not), built on the meta device: no memory, no RNG."""
    import torch

    from dynamics_lab.registry import MODELS, TASKS
    from dynamics_lab.train.module import DynamicsModule

    def shapes(device: str) -> dict[str, tuple]:
        with torch.random.fork_rng(devices=[]), torch.device(device):
            task = TASKS.build(config.task, batch_size=config.trainer.batch_size,
                               seed=config.seed)
            model = MODELS.build(config.model, task.spec)
            module = DynamicsModule(model, task.spec.loss, config.optim, config.trainer.log_every)
            return {k: tuple(v.shape) for k, v in module.state_dict().items()}

    def fits(checkpoint: dict) -> str | None:
        try:
            expected = shapes("meta")
        except Exception:  # a constructor that reads values: real (small) tensors
            expected = shapes("cpu")
        got = checkpoint.get("state_dict")
        if not isinstance(got, dict):
            return "it holds no model weights"
        for key in sorted(set(expected) | set(got)):
            if key not in got or key not in expected:
                return f"'{key}' is {'missing' if key not in got else 'not in this model'}"
            shape = tuple(getattr(got[key], "shape", ()))
            if shape != expected[key]:
                return f"'{key}' has shape {shape} there, {expected[key]} here"
        return None

    return fits


def weights_only() -> dict:
    """`weights_only=True` for Lightning's own checkpoint load, where its fit() takes it;
    older versions load what `load_checkpoint` has just checked."""
    import inspect

    import lightning as L

    accepts = "weights_only" in inspect.signature(L.Trainer.fit).parameters
    return {"weights_only": True} if accepts else {}


def execute(run: RunDir, resume: bool | None = False, echo=print,
            overrides: list[str] | tuple = ()) -> RunResult:
    """Train the run whose config.yaml is in `run` and record its status, metrics and verdict.
    `resume`: True continues from the last checkpoint, None does when it can (a sweep's retry),
    False starts afresh; `overrides` are resumable KEY=VALUE changes (with resume=True). A run
    whose checkpoint is at its last step is only judged again. A RunDirError when the run dir
    was deleted while it trained."""
    with Lifecycle([run], resume, overrides, fits=checkpoint_fits) as life:
        (config,) = life.configs
        step = run.meta["resumed_at_steps"][-1] if life.checkpoint else 0
        if life.checkpoint:
            echo(f"resuming {run.path} from step {step}")
        elif run.meta.get("restarted"):
            echo(f"starting {run.path} afresh: {run.meta['restarted']}")
        # A checkpoint at the last step (a detector that crashed, say): only judge again.
        life.ended([train(life, run, config, echo) if step < config.trainer.max_steps
                    else False])
    result = life.results[0]
    if not run.path.is_dir():
        raise RunDirError(result.error or f"'{run.path}' was deleted while the run trained")
    return result


def train(life: Lifecycle, run: RunDir, config: ExperimentConfig, echo=print) -> bool:
    """Seed, build and fit the run (from `life.checkpoint` when there is one); True when it
    diverged."""
    import lightning as L

    from dynamics_lab.registry import MODELS, TASKS
    from dynamics_lab.tracking.checkpoint import allowing_safe_globals
    from dynamics_lab.tracking.metrics import LocalMetricsLogger
    from dynamics_lab.tracking.progress import ProgressLine
    from dynamics_lab.train.module import DynamicsModule

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
    return module.diverged
