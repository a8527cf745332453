"""One `dynlab run`: the command line's request in, its runs prepared and launched, statuses out.

`plan` validates everything and writes the sweep dir (or reopens one); `launch` hands the runs
to the chosen engine: one run in this process, local worker processes, a Slurm array, or a W&B
sweep file for agents.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dynamics_lab.choices import LAUNCHERS
from dynamics_lab.config import ExperimentConfig, load_experiment
from dynamics_lab.sweep.grid import expand, single
from dynamics_lab.sweep.manifest import prepare_sweep, reopen_sweep
from dynamics_lab.tracking.rundir import (
    Status,
    default_runs_root,
    new_sweep_id,
    safe_component,
)


@dataclass
class RunRequest:
    """What `dynlab run` was asked to do; flags that set config keys become overrides."""

    experiment: str
    profile: str = "quick"
    overrides: list[str] = field(default_factory=list)
    sweep: bool = False
    seed: int | None = None
    out: Path | None = None
    workers: int | None = None
    launcher: str = "local"
    ensemble: int | str = 1  # runs per process, or "auto" (sweep/jobs.py)
    resume_sweep: Path | None = None
    wait: bool = False
    wandb: bool | None = None
    device: str | None = None
    plugins: list[str] = field(default_factory=list)  # module names or .py paths (--plugin)
    dry_run: bool = False  # validate and resolve the runs, write nothing
    force: bool = False  # run even what the memory estimate says this machine cannot hold

    def flag_overrides(self) -> list[str]:
        """--device, --wandb and --seed as the config keys they set."""
        extra = [f"trainer.device={self.device}"] if self.device else []
        if self.wandb is not None or self.launcher == "wandb":
            extra.append(f"logging.wandb={str(self.wandb is not False).lower()}")
        if self.seed is not None:
            extra.append(f"sweep.seeds=[{self.seed}]" if self.sweep else f"seed={self.seed}")
        return extra


@dataclass
class Plan:
    """A request resolved: the config, the sweep dir and its run dirs, all on disk."""

    request: RunRequest
    config: ExperimentConfig
    overrides: list[str]  # the request's, with the flags' keys
    sweep_dir: Path
    run_dirs: list[Path]
    unrecoverable: dict[Path, str] = field(default_factory=dict)  # run dir -> why
    specs: list = field(default_factory=list)  # the resolved runs (RunSpec), for a dry run

    @property
    def in_process(self) -> bool:
        """A single fresh local run trains in this process, not in a worker."""
        r = self.request
        return not r.sweep and r.ensemble == 1 and r.resume_sweep is None and r.launcher == "local"


def plan(request: RunRequest) -> Plan:
    """Validate the request and write (or reopen) the sweep dir; any bad input raises a one-line
    ConfigError, RunDirError or SlurmError before anything is written."""
    from dynamics_lab.schema import ConfigError
    from dynamics_lab.train.ensemble import check_ensemble

    if request.launcher not in LAUNCHERS:
        raise ConfigError(f"unknown launcher '{request.launcher}'; valid: {', '.join(LAUNCHERS)}")
    packs = request.ensemble != 1
    if request.ensemble == "auto" and not request.sweep:
        raise ConfigError("--ensemble auto packs a sweep's runs; add --sweep, or give a number "
                          "of seeds to train together")
    if packs and request.launcher == "wandb":
        raise ConfigError("--ensemble does not apply to --launcher wandb: each agent call trains "
                          "one run")
    overrides = [*request.overrides, *request.flag_overrides()]
    config = load_experiment(request.experiment, request.profile, overrides, request.plugins,
                             request.force)
    if request.launcher == "local":  # a Slurm or W&B run may train on another machine
        check_device(config.trainer.device)
    sweep = request.sweep
    if packs and not sweep:  # K seeds of the one configured run
        seeds = list(range(config.seed, config.seed + request.ensemble))
        overrides += ["sweep.grid={}", f"sweep.seeds={seeds}"]
        config = load_experiment(request.experiment, request.profile, overrides, request.plugins,
                             request.force)
        sweep = True
    if packs:
        check_ensemble(config)
    if request.plugins:  # what W&B agents pass to `dynlab agent-run` (config.yaml has them too)
        overrides.append(f"plugins={json.dumps(config.plugins)}")
    if request.launcher == "slurm":
        from dynamics_lab.sweep.slurm import cluster_of

        cluster_of(config.sweep.slurm)  # no Slurm here: say so before writing anything
    specs = expand(config) if sweep else [single(config)]
    if request.launcher == "wandb" and sweep:  # a random or Bayes search: agents make its runs
        from dynamics_lab.sweep.wandb_sweep import prepared

        specs = prepared(config, specs, resuming=request.resume_sweep is not None)
    if request.dry_run:
        sweep_dir = request.resume_sweep or ((request.out or default_runs_root())
                                             / safe_component(config.name, "experiment name")
                                             / "SWEEP_ID")
        return Plan(request, config, overrides, Path(sweep_dir), [], specs=specs)
    if request.resume_sweep is not None:
        sweep_dir = Path(request.resume_sweep)
        run_dirs, unrecoverable = reopen_sweep(config, specs, sweep_dir)
        return Plan(request, config, overrides, sweep_dir, run_dirs, unrecoverable)
    name = safe_component(config.name, "experiment name")
    sweep_dir = (request.out or default_runs_root()) / name / new_sweep_id()
    return Plan(request, config, overrides, sweep_dir, prepare_sweep(config, specs, sweep_dir))


def check_device(device: str) -> None:
    """A device this machine lacks (`cuda` without CUDA) is a one-line ConfigError."""
    from dynamics_lab.schema import ConfigError
    from dynamics_lab.train.lifecycle import resolve_device

    try:
        resolve_device(device)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def launch(plan: Plan, echo=print) -> dict[Path, Status] | None:
    """Run the plan's unfinished runs; their final statuses, or None when they go on elsewhere
    (a submitted Slurm array, a W&B sweep waiting for agents). Ctrl-C stops what runs here (the
    runs end `killed`, resumable) and is re-raised."""
    request, config = plan.request, plan.config
    if request.launcher == "wandb":
        from dynamics_lab.sweep.wandb_sweep import write_sweep

        echo("\n".join(write_sweep(config, plan.sweep_dir, request.experiment, plan.overrides)))
        return None
    if plan.in_process:
        from dynamics_lab.tracking.rundir import RunDir
        from dynamics_lab.train.runner import execute

        result = execute(RunDir(plan.run_dirs[0]), echo=echo)
        return {result.run_dir: result.status}
    from dynamics_lab.sweep.jobs import group_jobs
    from dynamics_lab.sweep.manifest import unfinished
    from dynamics_lab.sweep.slurm import active_runs

    todo = unfinished(plan.run_dirs, skip=active_runs(plan.sweep_dir))
    if len(todo) < len(plan.run_dirs):
        echo(f"{len(plan.run_dirs) - len(todo)} run(s) finished or still running; "
             f"launching {len(todo)}")
    workers = 1  # Slurm schedules its array itself: only local workers are balanced over
    if request.launcher == "local":
        from dynamics_lab.sweep.local import default_workers, visible_gpus

        workers = request.workers or default_workers(visible_gpus())
    jobs = group_jobs(todo, request.ensemble, workers)
    from dynamics_lab.tracking.wandb import sweep_sync_hint

    try:
        if request.launcher == "slurm":
            from dynamics_lab.sweep.slurm import launch_array

            return launch_array(config, plan.sweep_dir, jobs, request.wait, echo)
        from dynamics_lab.sweep.local import launch_with_progress

        return launch_with_progress(plan.sweep_dir, jobs, workers)
    finally:  # once for the sweep (each run's own hint is in its log), once its runs ran
        hint = sweep_sync_hint(plan.sweep_dir)
        if hint:
            echo(hint)
