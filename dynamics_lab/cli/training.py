"""The commands that train: `run` (one run or a sweep), `phase` (a phase-diagram search),
`resume` (a stopped run) and the hidden `agent-run` (what a W&B agent starts)."""

from __future__ import annotations

from pathlib import Path

import typer

from dynamics_lab.cli.common import (
    INTERRUPTED,
    Device,
    Launcher,
    complete_experiment,
    echo,
    ensemble_size,
    fail,
)
from dynamics_lab.tracking.rundir import Status


def run(
    experiment: str = typer.Argument(..., help="name in experiments/ or a path to a YAML file",
                                     autocompletion=complete_experiment),
    sweep: bool = typer.Option(False, "--sweep", help="expand the experiment's sweep grid x seeds"),
    profile: str = typer.Option("quick", help="quick (CPU, minutes) or full (paper scale)"),
    overrides: list[str] = typer.Option([], "--set", help="KEY=VALUE, e.g. optim.lr=0.01"),
    seed: int | None = typer.Option(None, help="model-init seed (with --sweep: the only seed)"),
    out: Path | None = typer.Option(None, help="runs root (default: $DYNLAB_RUNS or runs/)"),
    workers: int | None = typer.Option(
        None, min=1, help="jobs at once, one torch thread each (default: one per GPU, else 1)"),
    launcher: Launcher = typer.Option(
        Launcher.local, help="local subprocesses; slurm: a submitit job array (settings: "
                             "--set sweep.slurm.KEY=VALUE); wandb: a W&B sweep file for agents"),
    ensemble: str = typer.Option(
        "1", callback=ensemble_size, help="train up to K runs that differ only in seed, weight "
        "decay, init scale or SGD step size as one vectorized model; auto: as many per process "
        "as shapes and memory allow (without --sweep: K seeds from --seed)"),
    resume_sweep: Path | None = typer.Option(
        None, "--resume-sweep", help="finish this sweep dir: skip finished runs, resume killed "
                                     "ones from their checkpoints, rerun failed ones"),
    wait: bool = typer.Option(False, "--wait", help="slurm: block until the array is done"),
    wandb: bool | None = typer.Option(None, "--wandb/--no-wandb",
                                         help="default: on when a W&B login is present"),
    device: Device | None = typer.Option(None, help="default: the config's trainer.device"),
    plugins: list[str] = typer.Option(
        [], "--plugin", help="a module name or .py file registering tasks, models, "
                             "measurements or phenomena (repeatable; added to `plugins:`)"),
    tags: list[str] = typer.Option([], "--tag", help="W&B tag of every run (repeatable; sets "
                                                     "logging.tags)"),
    notes: str | None = typer.Option(None, "--notes",
                                     help="W&B notes of every run (sets logging.notes)"),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="print the runs it would start, and write nothing"),
    print_config: bool = typer.Option(False, "--print-config",
                                      help="print each run's resolved config (a dry run)"),
    force: bool = typer.Option(False, "--force",
                               help="run even when its memory estimate exceeds this machine"),
) -> None:
    """Run an experiment (one run, or the sweep), judge each run, print the verdicts."""
    from dynamics_lab.schema import ConfigError
    from dynamics_lab.sweep.launch import RunRequest, launch, plan
    from dynamics_lab.sweep.slurm import SlurmError
    from dynamics_lab.tracking.provenance import record_command
    from dynamics_lab.tracking.rundir import RunDirError
    from dynamics_lab.tracking.wandb import tag_overrides

    overrides = [*overrides, *tag_overrides(tags, notes)]  # kept in every run's config.yaml

    request = RunRequest(experiment, profile, overrides, sweep, seed, out, workers, launcher.value,
                         ensemble, resume_sweep, wait, wandb, device.value if device else None,
                         plugins, dry_run=dry_run or print_config, force=force)
    planned = None
    try:
        planned = plan(request)
        if request.dry_run:
            raise typer.Exit(print_plan(planned, print_config))
        record_command(planned.sweep_dir)  # the user's command line, in sweep.json
        echo(f"{planned.config.name} [{planned.config.profile}]: {len(planned.run_dirs)} run(s) "
             f"-> {planned.sweep_dir}")
        statuses = launch(planned, echo)
    except (ConfigError, RunDirError, SlurmError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        if planned is not None:
            print_summary(planned.sweep_dir, planned.unrecoverable)
            echo(f"interrupted: finish the sweep with the same command and --resume-sweep "
                 f"{planned.sweep_dir}")
        raise typer.Exit(INTERRUPTED) from None
    if statuses is None:  # submitted, or waiting for W&B agents: the runs go on elsewhere
        raise typer.Exit(0)
    if planned.in_process:
        raise typer.Exit(print_result(planned.run_dirs[0]))
    failures = print_summary(planned.sweep_dir, planned.unrecoverable, statuses)
    raise typer.Exit(1 if failures else 0)


def print_plan(planned, configs: bool) -> int:
    """A dry run: where the runs would go, one line per run (its id and the values it sets),
    and with `configs` each run's resolved config; nothing is written."""
    import yaml

    echo(f"{planned.config.name} [{planned.config.profile}]: {len(planned.specs)} run(s) "
         f"-> {planned.sweep_dir} (dry run: nothing written)")
    for spec in planned.specs:
        echo(f"  {spec.run_id}")
        if configs:
            echo(f"--- # {spec.run_id}\n"
                 + yaml.safe_dump(spec.config.to_dict(), sort_keys=False).rstrip())
    return 0


def print_result(run_dir: Path) -> int:
    """`[status, wall] verdict summary (or the error)` of one run, and how to go on if it was
    interrupted; returns the exit status (0 finished, 130 interrupted, 1 otherwise)."""
    from dynamics_lab.tracking.rundir import RunDir

    run = RunDir(run_dir)
    meta = run.meta
    line = ((run.verdict() or {}).get("summary") or meta.get("error")
            or "no verdict (no phenomenon configured)")
    echo(f"[{meta['status']}, {meta.get('wall_time_s', 0.0):.1f}s] {line}")
    if run.status != Status.KILLED:
        return 0 if run.status.finished else 1
    echo(f"continue with: dynlab resume {run.path}" if run.has_checkpoint()
         else "stopped before its first checkpoint: run it again")
    return INTERRUPTED


def phase(
    experiment: str = typer.Argument(..., help="name in experiments/ or a path to a YAML file",
                                     autocompletion=complete_experiment),
    x: str = typer.Option(..., "--x", help="KEY=LO:HI or KEY=LO:HI:log, e.g. optim.lr=0.01:1:log"),
    y: str | None = typer.Option(None, "--y", help="a second axis (without it: bisection in x)"),
    budget: int | None = typer.Option(None, help="runs in all, seeds included (default: none)"),
    resolution: int = typer.Option(13, help="points per axis of the finest grid it may refine "
                                            "to (rounded up to coarse grid halvings)"),
    seeds: int = typer.Option(1, help="seeds per point; a point's label is their majority"),
    coarse: int = typer.Option(4, help="points per axis of the first round's grid"),
    profile: str = typer.Option("quick", help="quick (CPU, minutes) or full (paper scale)"),
    overrides: list[str] = typer.Option([], "--set", help="KEY=VALUE, e.g. trainer.max_steps=500"),
    out: Path | None = typer.Option(None, help="runs root (default: $DYNLAB_RUNS or runs/)"),
    workers: int | None = typer.Option(None, min=1, help="jobs at once, one torch thread each"),
    launcher: Launcher = typer.Option(Launcher.local, help="local or slurm (each round's array "
                                                           "is waited for)"),
    ensemble: str = typer.Option("1", callback=ensemble_size,
                                 help="runs per process trained as one vectorized model "
                                      "(a number, or auto)"),
    resume_sweep: Path | None = typer.Option(
        None, "--resume-sweep", help="go on with this search: rerun what did not finish, then "
                                     "refine from the labels on disk"),
    wandb: bool | None = typer.Option(None, "--wandb/--no-wandb",
                                         help="default: on when a W&B login is present"),
    device: Device | None = typer.Option(None, help="default: the config's trainer.device"),
    plugins: list[str] = typer.Option([], "--plugin", help="a module name or .py file "
                                                           "registering plugins (repeatable)"),
) -> None:
    """Phase diagram: a coarse grid, then round by round only the cells whose corners' phase
    labels differ, until --resolution or --budget; the map and the points in the sweep dir."""
    from dynamics_lab.schema import ConfigError
    from dynamics_lab.sweep.launch import RunRequest
    from dynamics_lab.sweep.phase import (
        PhaseRequest,
        not_finished,
        plan_search,
        run_search,
        write_outputs,
    )
    from dynamics_lab.sweep.slurm import SlurmError
    from dynamics_lab.tracking.rundir import RunDirError

    run_request = RunRequest(experiment, profile, overrides, True, None, out, workers,
                             launcher.value, ensemble, resume_sweep, True, wandb,
                             device.value if device else None, plugins)
    request = PhaseRequest(run_request, [x] if y is None else [x, y], budget, resolution, seeds,
                           coarse)
    search = None
    try:
        search = plan_search(request)
        echo(f"{search.config.name} [{search.config.profile}]: phase search over "
             + " x ".join(a.spec() for a in search.lattice.axes)
             + f", {search.lattice.resolution} points per axis at the finest -> "
             f"{search.sweep_dir}")
        echo(run_search(search, echo))
        written = write_outputs(search, echo)
        failures = not_finished(search)
    except (ConfigError, RunDirError, SlurmError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        if search is not None:
            echo(f"interrupted: go on with the same command and --resume-sweep "
                 f"{search.sweep_dir}")
        raise typer.Exit(INTERRUPTED) from None
    for path in written:
        echo(f"wrote {path}")
    if failures:  # their points are labelled with the status and refined around
        echo(f"{len(failures)} run(s) did not finish:\n  " + "\n  ".join(failures))
    raise typer.Exit(1 if failures else 0)


def agent_run(
    experiment: str = typer.Argument(...),
    sweep_dir: Path = typer.Option(..., "--sweep-dir"),
    profile: str = typer.Option("quick"),
    overrides: list[str] = typer.Option([], "--set"),
) -> None:
    """What a W&B agent runs: the run of this sweep that wandb.config names (made when a random
    or Bayes search sampled values no run has)."""
    from dynamics_lab.config import load_experiment
    from dynamics_lab.schema import ConfigError
    from dynamics_lab.sweep import wandb_runs, wandb_sweep
    from dynamics_lab.tracking.rundir import RunDir, RunDirError
    from dynamics_lab.train.worker import run_one

    params = wandb_sweep.agent_params()
    if not params:
        fail("wandb.config is empty: agent-run is started by `wandb agent` (see wandb_sweep.yaml)")
    try:
        config = load_experiment(experiment, profile, overrides)
        run_dir, refused = wandb_runs.find_run(config, sweep_dir, params)
    except (ConfigError, RunDirError) as exc:
        fail(str(exc))
    if refused:  # recorded in the run dir as a failed run
        fail(f"{run_dir.name}: {refused}", code=1)
    wandb_sweep.attach_config(RunDir(run_dir).config())
    status = run_one(run_dir, echo=echo)
    raise typer.Exit(wandb_runs.exit_code(run_dir, status))


def print_summary(sweep_dir: Path, unrecoverable: dict[Path, str],
                  statuses: dict | None = None) -> list[str]:
    """The sweep's table, then one line per run that did not finish (with its reason) and per
    unrecoverable run; returns those lines for the launched runs (`statuses`) and the latter."""
    from dynamics_lab.report import summarize_sweep

    text, failures = summarize_sweep(sweep_dir, unrecoverable, {Path(p) for p in statuses or {}})
    echo(text)
    return failures


def resume(run_dir: Path = typer.Argument(..., help="a stopped run directory"),
           overrides: list[str] = typer.Option(
               [], "--set", help="KEY=VALUE of trainer.max_steps (extends even a completed "
                                 "run), trainer.checkpoint_every or trainer.device")) -> None:
    """Continue a stopped run from its last checkpoint, appending to the same metrics."""
    from dynamics_lab.tracking.rundir import RunDir, RunDirError
    from dynamics_lab.train.runner import execute

    try:
        result = execute(RunDir(run_dir), resume=True, echo=echo, overrides=overrides)
    except RunDirError as exc:  # not a run, finished, in use, no or unsafe checkpoint, bad metrics
        fail(str(exc))
    raise typer.Exit(print_result(result.run_dir))
