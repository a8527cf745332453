"""`--ensemble K`: runs that differ only in values that keep tensor shapes, trained as one
vectorized model.

Each member keeps its own run directory (config, meta, metrics.csv, verdict) and ends up with
the metrics K separate runs would log, up to float rounding: it is built with the same seeding
as a single run (seed_everything(seed), then task, then model), draws its own minibatch order and
runs its own copy of every measurement (`ensemble_measure.py`). Members may differ in `VARYING`:
the seed, the weight decay, the initial scale, and the step size for the SGD family (whose
update is linear in the gradient); everything else, the data included, is shared.
Ensembles checkpoint like single runs and resume when their members come back together
(`ensemble_checkpoint.py`), and each member is its own W&B run when W&B is on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from dynamics_lab.config import ExperimentConfig
from dynamics_lab.schema import ConfigError
from dynamics_lab.tracking.rundir import RunDir
from dynamics_lab.train.lifecycle import Lifecycle, RunResult

# What may differ between members of one ensemble. `model.init_scale` scales the initial
# weights only (every house model); a step size only where the update is linear in it.
VARYING = ("seed", "optim.weight_decay", "optim.lr", "model.init_scale")
LINEAR_IN_LR = ("sgd", "gd")
# Callback hooks an ensemble forwards to each member's measurements; one that overrides any
# other hook would see the stacked model, not a member.
MEMBER_HOOKS = ("on_fit_start", "on_train_batch_start", "on_train_batch_end", "on_train_end",
                "state_dict", "load_state_dict", "state_key")


def check_ensemble(config: ExperimentConfig) -> None:
    """Fail before anything is written when a measurement cannot run per member (one line)."""
    import lightning as L

    from dynamics_lab.measure.base import Measurement
    from dynamics_lab.registry import MEASUREMENTS

    for name, section in config.measure.items():
        cls = MEASUREMENTS.get(section.name)
        hooks = [h for h in dir(L.Callback) if h.startswith("on_") and h not in MEMBER_HOOKS
                 and getattr(cls, h, None) is not getattr(L.Callback, h)]
        if not (isinstance(cls, type) and issubclass(cls, Measurement)) or hooks:
            why = f"it overrides {', '.join(hooks)}" if hooks else "it is not a Measurement"
            raise ConfigError(f"measurement '{name}' cannot run per ensemble member ({why}, "
                              "which would see the stacked model); drop it with --set "
                              f"measure.{name}=null, or run without --ensemble")


def group_key(config: dict) -> str:
    """Runs with equal keys can share an ensemble: everything but VARYING (and bookkeeping)."""
    data = {k: v for k, v in config.items() if k not in ("seed", "sweep", "logging")}
    optim = config.get("optim", {})
    shared = ("weight_decay", "lr") if optim.get("name") in LINEAR_IN_LR else ("weight_decay",)
    data["optim"] = {k: v for k, v in optim.items() if k not in shared}
    data["model"] = {k: v for k, v in config.get("model", {}).items() if k != "init_scale"}
    return json.dumps(data, sort_keys=True, default=str)


class StackedBatches:
    """One minibatch per member, stacked along a leading member axis."""

    def __init__(self, streams: list):
        self.streams = streams

    def __iter__(self) -> Iterator:
        import torch

        for batches in zip(*self.streams):
            yield torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])


def ensemble_data(tasks: list, shared: bool):
    """A datamodule serving member 0's splits to all; minibatches drawn per member's seed."""
    import lightning as L

    class EnsembleData(L.LightningDataModule):
        def train_dataloader(self):
            for task in tasks:
                task.trainer = self.trainer  # so each task puts its tensors on our device
            if shared:
                return tasks[0].train_dataloader()
            return StackedBatches([t.train_dataloader() for t in tasks])

        def val_dataloader(self):
            tasks[0].trainer = self.trainer
            return tasks[0].val_dataloader()

        def state_dict(self) -> dict:
            return {"members": [task.state_dict() for task in tasks]}  # minibatch positions

        def load_state_dict(self, state: dict) -> None:
            for task, member in zip(tasks, state.get("members", [])):
                task.load_state_dict(member)

    return EnsembleData()


def build_members(configs: list[ExperimentConfig]) -> tuple[list, list]:
    """Each member's task and model, seeded exactly as a separate run would seed them."""
    import lightning as L
    import torch

    from dynamics_lab.registry import MODELS, TASKS
    from dynamics_lab.train.runner import built_in_dtype

    tasks, models = [], []
    for c in configs:
        L.seed_everything(c.seed, verbose=False)
        task = TASKS.build(c.task, batch_size=c.trainer.batch_size, seed=c.seed,
                           eval_chunk=c.trainer.eval_chunk)
        task.setup()
        tasks.append(task)
        models.append(built_in_dtype(MODELS.build(c.model, task.spec), c))
    for task in tasks[1:]:
        for split, (x, y) in task.splits.items():
            x0, y0 = tasks[0].splits[split]
            if not (torch.equal(x, x0) and torch.equal(y, y0)):
                raise ValueError(f"task '{configs[0].task.name}' builds different data per seed; "
                                 "an ensemble needs one dataset for all members")
    return tasks, models


def execute_ensemble(runs: list[RunDir], resume: bool | None = None,
                     echo=print) -> list[RunResult]:
    """Train `runs` as one ensemble; record each member's status, metrics and verdict.
    `resume`: None continues from the members' shared checkpoint when they all hold it (a
    sweep's retry), True insists on it, False starts afresh (`ensemble_checkpoint.py`)."""
    import lightning as L

    from dynamics_lab.tasks.base import TensorTask
    from dynamics_lab.tracking.checkpoint import (
        AtomicCheckpointIO,
        RandomState,
        allowing_safe_globals,
    )
    from dynamics_lab.tracking.metrics import LocalMetricsLogger
    from dynamics_lab.train.ensemble_checkpoint import EnsembleCheckpoint
    from dynamics_lab.train.ensemble_measure import EnsembleMeasurements
    from dynamics_lab.train.ensemble_module import EnsembleModule
    from dynamics_lab.train.runner import build_measurements, trainer_settings, weights_only

    members = {"size": len(runs), "members": [r.path.name for r in runs]}
    with Lifecycle(runs, resume, ensemble=members) as life:
        first = life.configs[0]
        if len({group_key(c.to_dict()) for c in life.configs}) != 1:
            raise ValueError(f"ensemble members may differ only in {', '.join(VARYING)}")
        check_ensemble(first)
        if life.checkpoint:
            echo(f"resuming the ensemble of {len(runs)} from step "
                 f"{runs[0].meta['resumed_at_steps'][-1]}")
        device = life.resolve_device(first.trainer.device)
        tasks, models = build_members(life.configs)
        shared = (first.trainer.batch_size is None
                  and type(tasks[0]).train_dataloader is TensorTask.train_dataloader)
        loggers = [[LocalMetricsLogger(r.path), *life.wandb_loggers(echo, m)]
                   for m, r in enumerate(runs)]
        module = EnsembleModule(models, tasks[0].spec.loss, [c.optim for c in life.configs],
                                loggers, first.trainer.log_every, shared)
        callbacks: list = []
        if first.measure:
            callbacks.append(EnsembleMeasurements(
                [build_measurements(c) for c in life.configs], tasks, loggers,
                [str(r.path) for r in runs]))
        t = first.trainer
        checkpoint = EnsembleCheckpoint(runs, t.checkpoint_every or t.max_steps, t.eval_every,
                                        lambda: life.stop.requested is not None, first.name)
        trainer = L.Trainer(**trainer_settings(first, device), logger=False,
                            callbacks=[*callbacks, RandomState(), checkpoint, life.stop],
                            default_root_dir=runs[0].path, plugins=[AtomicCheckpointIO()])
        with life.stop.deferred(), allowing_safe_globals():
            trainer.fit(module, datamodule=ensemble_data(tasks, shared),
                        ckpt_path=life.checkpoint, **weights_only())
        life.ended(module.diverged)
    return life.results
