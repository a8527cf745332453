"""The `dynlab` command line. Heavy imports (torch, lightning, pandas) happen inside commands."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from dynamics_lab.tracking.rundir import Status

INTERRUPTED = 130  # exit status after Ctrl-C, as shells report SIGINT

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Reproduce training-dynamics phenomena: run, measure, judge, report.")


class Launcher(str, Enum):
    local = "local"
    slurm = "slurm"
    wandb = "wandb"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def echo(message: str) -> None:
    typer.echo(message)


@app.command("list")
def list_() -> None:
    """Experiments, tasks, models, measurements and phenomena this install knows."""
    from dynamics_lab.config import list_experiments
    from dynamics_lab.registry import MEASUREMENTS, MODELS, PHENOMENA, TASKS

    echo("experiments:  " + ", ".join(list_experiments()))
    for registry in (TASKS, MODELS, MEASUREMENTS, PHENOMENA):
        echo(f"{registry.plural + ':':13} " + (", ".join(registry.names()) or "-"))


@app.command()
def run(
    experiment: str = typer.Argument(..., help="name in experiments/ or a path to a YAML file"),
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
    ensemble: int = typer.Option(
        1, min=1, help="train up to K runs differing only in seed/weight decay as one vectorized "
                       "model (without --sweep: K seeds from --seed)"),
    resume_sweep: Path | None = typer.Option(
        None, "--resume-sweep", help="finish this sweep dir: skip finished runs, resume killed "
                                     "ones from their checkpoints, rerun failed ones"),
    wait: bool = typer.Option(False, "--wait", help="slurm: block until the array is done"),
    wandb: bool | None = typer.Option(None, "--wandb/--no-wandb",
                                         help="default: on when a W&B login is present"),
    device: Device | None = typer.Option(None, help="default: the config's trainer.device"),
) -> None:
    """Run an experiment (one run, or the sweep), judge each run, print the verdicts."""
    from dynamics_lab.schema import ConfigError
    from dynamics_lab.sweep.launch import RunRequest, launch, plan
    from dynamics_lab.sweep.slurm import SlurmError
    from dynamics_lab.tracking.rundir import RunDirError

    request = RunRequest(experiment, profile, overrides, sweep, seed, out, workers, launcher.value,
                         ensemble, resume_sweep, wait, wandb, device.value if device else None)
    planned = None
    try:
        planned = plan(request)
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


@app.command("agent-run", hidden=True)
def agent_run(
    experiment: str = typer.Argument(...),
    sweep_dir: Path = typer.Option(..., "--sweep-dir"),
    profile: str = typer.Option("quick"),
    overrides: list[str] = typer.Option([], "--set"),
) -> None:
    """What a W&B agent runs: the run of this sweep that wandb.config names."""
    from dynamics_lab.config import load_experiment
    from dynamics_lab.schema import ConfigError
    from dynamics_lab.sweep import wandb_sweep
    from dynamics_lab.tracking.rundir import RunDir, RunDirError
    from dynamics_lab.train.worker import run_one

    params = wandb_sweep.agent_params()
    if not params:
        fail("wandb.config is empty: agent-run is started by `wandb agent` (see wandb_sweep.yaml)")
    try:
        config = load_experiment(experiment, profile, overrides)
        run_dir = wandb_sweep.find_run(config, sweep_dir, params)
    except (ConfigError, RunDirError) as exc:
        fail(str(exc))
    wandb_sweep.attach_config(RunDir(run_dir).config())
    status = run_one(run_dir, echo=echo)
    raise typer.Exit(0 if status.finished else 1)


def print_summary(sweep_dir: Path, unrecoverable: dict[Path, str],
                  statuses: dict | None = None) -> list[str]:
    """The sweep's table, then one line per run that did not finish (with its reason) and per
    unrecoverable run; returns those lines for the launched runs (`statuses`) and the latter."""
    import pandas as pd

    from dynamics_lab.report.tables import sweep_table
    from dynamics_lab.tracking.rundir import FINISHED

    table = sweep_table(sweep_dir)
    hidden = ["run_id", "sweep_id", "summary", "error"]
    shown = table.drop(columns=[c for c in hidden if c in table])
    shown.columns = [c.rsplit(".", 1)[-1] for c in shown.columns]
    with pd.option_context("display.width", 200, "display.max_columns", 30,
                           "display.float_format", "{:.4g}".format):
        echo("\n" + shown.to_string(index=False))
    launched = {Path(p).name for p in (statuses or {})}
    lost = {p.name: why for p, why in unrecoverable.items()}
    failures = []
    for row in table.to_dict("records"):
        if row["run_id"] in lost:
            failures.append(f"{row['run_id']}: unrecoverable: {lost[row['run_id']]}")
        elif row["run_id"] in launched and row["status"] not in FINISHED:
            failures.append(f"{row['run_id']}: {row['status']}: {row.get('error') or ''}")
    echo(f"\nsummary of {len(table)} run(s) in {sweep_dir}")
    if failures:
        echo(f"{len(failures)} run(s) did not finish:\n  " + "\n  ".join(failures))
    return failures


@app.command()
def report(
    experiment: str = typer.Argument(..., help="experiment name (its runs live in runs/NAME)"),
    runs: Path | None = typer.Option(None, help="runs dir or sweep dir (default runs/NAME)"),
    out: Path | None = typer.Option(None, help="output dir (default results/NAME)"),
) -> None:
    """Summary table and figures of the newest sweep into results/EXPERIMENT/."""
    from dynamics_lab.report import ReportError, write_report
    from dynamics_lab.tracking.rundir import RunDirError, default_runs_root

    name = Path(experiment).stem
    runs_root = runs or default_runs_root() / name
    if not runs_root.is_dir():
        fail(f"no runs at '{runs_root}' (run `dynlab run {name} --sweep` first, or pass --runs)")
    try:
        written = write_report(runs_root, out or Path("results") / name, echo=echo)
    except (ReportError, RunDirError) as exc:
        fail(str(exc))
    for path in written:
        echo(f"wrote {path}")


@app.command()
def show(run_dir: Path = typer.Argument(..., help="a run directory"),
         config: bool = typer.Option(False, "--config", help="also print the resolved config")
         ) -> None:
    """Status, verdict and last metrics of one run (and its config with --config)."""
    import yaml

    from dynamics_lab.tracking.metrics import read_metrics
    from dynamics_lab.tracking.resume import still_running
    from dynamics_lab.tracking.rundir import RunDir, RunDirError

    try:
        run = RunDir.open(run_dir)
        meta, verdict = run.meta, run.verdict()
        metrics = read_metrics(run.metrics_path) if run.metrics_path.exists() else None
        resolved = run.config() if config else None
    except RunDirError as exc:
        fail(str(exc))
    if run.status == Status.RUNNING:
        time_ = f"running for {elapsed_s(meta.get('started')):.1f}s"
        if not still_running(run):
            time_ += " (no live process holds it: `dynlab resume` continues it)"
    else:
        time_ = f"wall: {meta.get('wall_time_s')}s"
    where = {"device": meta.get("device"), "commit": (meta.get("git") or {}).get("commit")}
    echo(f"status: {run.status}  {time_}" + "".join(f"  {k}: {v}" for k, v in where.items() if v))
    if verdict:
        echo(f"verdict: {verdict.get('summary')}")
    if meta.get("error"):
        echo(f"error: {meta['error']}")
    if metrics is not None and len(metrics):
        last = metrics.ffill().iloc[-1]
        echo(f"last metrics (step {int(last['step'])}): " + ", ".join(
            f"{k}={v:.4g}" for k, v in last.items() if k != "step"))
    if resolved is not None:
        echo("\n" + yaml.safe_dump(resolved, sort_keys=False).rstrip())


def elapsed_s(started: str | None) -> float:
    """Seconds since an ISO timestamp from meta.json (0 when there is none)."""
    from datetime import datetime, timezone

    if not started:
        return 0.0
    return (datetime.now(timezone.utc) - datetime.fromisoformat(started)).total_seconds()


@app.command()
def resume(run_dir: Path = typer.Argument(..., help="a stopped run directory")) -> None:
    """Continue a stopped run from its last checkpoint, appending to the same metrics."""
    from dynamics_lab.tracking.rundir import RunDir, RunDirError
    from dynamics_lab.train.runner import execute

    try:
        result = execute(RunDir(run_dir), resume=True, echo=echo)
    except RunDirError as exc:  # not a run, finished, in use, no or unsafe checkpoint, bad metrics
        fail(str(exc))
    raise typer.Exit(print_result(result.run_dir))
