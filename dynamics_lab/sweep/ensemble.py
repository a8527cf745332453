"""`--ensemble K`: runs that differ only in seed or weight decay, trained as one vectorized model.

Each member keeps its own run directory (config, meta, metrics.csv, verdict) and ends up with
the metrics K separate runs would log, up to float rounding: it is built with the same seeding
as `runner.execute` (seed_everything(seed), then task, then model) and draws its own minibatch
order. Not supported inside an ensemble: measurement callbacks (a clear error), mid-run
checkpoints (a killed ensemble restarts its members), W&B logging (members log locally).
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

from dynamics_lab.config import ExperimentConfig, build_config
from dynamics_lab.runner import RunResult, judge, quiet_lightning, resolve_device, set_threads
from dynamics_lab.schema import ConfigError
from dynamics_lab.tracking.metrics import MetricsFile
from dynamics_lab.tracking.rundir import RunDir

VARYING = ("seed", "optim.weight_decay")  # what may differ between members of one ensemble


def check_ensemble(config: ExperimentConfig) -> None:
    """Fail before anything is written when the config asks for what ensembles do not do."""
    if config.measure:
        names = ", ".join(config.measure)
        raise ConfigError(f"--ensemble does not run measurements (configured: {names}); drop "
                          f"them with --set measure.NAME=null, or run without --ensemble")


def group_key(config: dict) -> str:
    """Runs with equal keys can share an ensemble: everything but VARYING (and bookkeeping)."""
    data = {k: v for k, v in config.items() if k not in ("seed", "sweep", "logging")}
    data["optim"] = {k: v for k, v in config.get("optim", {}).items() if k != "weight_decay"}
    return json.dumps(data, sort_keys=True, default=str)


def group_jobs(run_dirs: list[Path], size: int) -> list[list[Path]]:
    """Jobs of up to `size` compatible runs, in sweep order; a run to resume goes alone."""
    if size <= 1:
        return [[d] for d in run_dirs]
    groups: dict[str, list[Path]] = {}
    jobs: list[list[Path]] = []
    for path in run_dirs:
        run = RunDir(path)
        resumable = (run.checkpoint_dir / "last.ckpt").exists()
        if resumable and run.meta.get("status") in ("killed", "running"):
            jobs.append([path])
            continue
        group = groups.setdefault(group_key(run.config()), [])
        group.append(path)
        if len(group) == size:
            jobs.append(list(group))
            group.clear()
    jobs += [g for g in groups.values() if g]
    return jobs


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

    return EnsembleData()


def build_members(configs: list[ExperimentConfig]) -> tuple[list, list]:
    """Each member's task and model, seeded exactly as a separate run would seed them."""
    import lightning as L
    import torch

    from dynamics_lab.registry import MODELS, TASKS

    tasks, models = [], []
    for c in configs:
        L.seed_everything(c.seed, verbose=False)
        task = TASKS.get(c.task.name)(c.task, batch_size=c.trainer.batch_size, seed=c.seed,
                                      eval_chunk=c.trainer.eval_chunk)
        task.setup()
        tasks.append(task)
        models.append(MODELS.get(c.model.name)(c.model, task.spec))
    for task in tasks[1:]:
        for split, (x, y) in task.splits.items():
            x0, y0 = tasks[0].splits[split]
            if not (torch.equal(x, x0) and torch.equal(y, y0)):
                raise ValueError(f"task '{configs[0].task.name}' builds different data per seed; "
                                 "an ensemble needs one dataset for all members")
    return tasks, models


def execute_ensemble(runs: list[RunDir], echo=print) -> list[RunResult]:
    """Train the runs in `runs` as one ensemble; record each member's status, metrics, verdict."""
    quiet_lightning()
    set_threads()
    import lightning as L

    from dynamics_lab.ensemble_module import EnsembleModule
    from dynamics_lab.runner import trainer_settings
    from dynamics_lab.tasks.base import TensorTask
    from dynamics_lab.tracking.metrics import LocalMetricsLogger

    configs = [build_config(r.config()) for r in runs]
    first = configs[0]
    members = [r.path.name for r in runs]
    for run in runs:
        run.start(first.trainer.device)
        run.update_meta(ensemble={"size": len(runs), "members": members})
    if first.logging.wandb:
        echo("note: ensemble members log locally only (no W&B)")
    t0 = time.time()
    try:
        if len({group_key(c.to_dict()) for c in configs}) != 1:
            raise ValueError(f"ensemble members may differ only in {', '.join(VARYING)}")
        check_ensemble(first)
        device = resolve_device(first.trainer.device)
        for run in runs:
            run.update_meta(device=device)
        tasks, models = build_members(configs)
        shared = (first.trainer.batch_size is None
                  and type(tasks[0]).train_dataloader is TensorTask.train_dataloader)
        module = EnsembleModule(models, tasks[0].spec.loss, first.optim,
                                [c.optim.weight_decay for c in configs],
                                [[LocalMetricsLogger(r.path)] for r in runs],
                                first.trainer.log_every, shared)
        trainer = L.Trainer(**trainer_settings(first, device), logger=False,
                            default_root_dir=runs[0].path)
        trainer.fit(module, datamodule=ensemble_data(tasks, shared))
        statuses, error = ["diverged" if d else "completed" for d in module.diverged], None
    except KeyboardInterrupt:
        statuses, error = ["killed"] * len(runs), "interrupted"
    except Exception as exc:  # the ensemble failed; every member records why
        statuses, error = ["failed"] * len(runs), f"{type(exc).__name__}: {exc}"
        for run in runs:
            (run.path / "error.log").write_text(traceback.format_exc())
    results = []
    for run, config, status in zip(runs, configs, statuses):
        if run.metrics_path.exists():
            MetricsFile(run.metrics_path).compact()  # one row per step, as a single run leaves it
        verdict = judge(config, run) if status in ("completed", "diverged") else None
        run.finish(status, error)
        results.append(RunResult(run.path, status, verdict, time.time() - t0, error))
        echo(f"{run.path.name}: {status}: {(verdict or {}).get('summary', error or '')}")
    return results
