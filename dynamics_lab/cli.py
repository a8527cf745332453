"""The `dynlab` command line. Heavy imports (torch, lightning, pandas) happen inside commands."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

import typer

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
    from dynamics_lab.config import load_experiment
    from dynamics_lab.schema import ConfigError
    from dynamics_lab.sweep import expand, prepare_sweep, reopen_sweep, single
    from dynamics_lab.sweep.ensemble import check_ensemble
    from dynamics_lab.sweep.slurm import SlurmError, cluster_of
    from dynamics_lab.tracking.rundir import RunDirError, default_runs_root, new_sweep_id

    extra = [f"trainer.device={device.value}"] if device else []
    if wandb is not None or launcher == Launcher.wandb:
        extra.append(f"logging.wandb={str(wandb is not False).lower()}")
    if seed is not None:
        extra.append(f"sweep.seeds=[{seed}]" if sweep else f"seed={seed}")
    if ensemble > 1 and launcher == Launcher.wandb:
        fail("--ensemble does not apply to --launcher wandb: each agent call trains one run")
    try:
        config = load_experiment(experiment, profile, [*overrides, *extra])
        if ensemble > 1 and not sweep:  # K seeds of the one configured run
            seeds = list(range(config.seed, config.seed + ensemble))
            extra += ["sweep.grid={}", f"sweep.seeds={seeds}"]
            config, sweep = load_experiment(experiment, profile, [*overrides, *extra]), True
        if ensemble > 1:
            check_ensemble(config)
        if launcher == Launcher.slurm:
            cluster_of(config.sweep.slurm)  # no Slurm here: say so before writing anything
        specs = expand(config) if sweep else [single(config)]
        if resume_sweep is not None:
            sweep_dir, run_dirs = resume_sweep, reopen_sweep(config, specs, resume_sweep)
        else:
            sweep_dir = (out or default_runs_root()) / config.name / new_sweep_id()
            run_dirs = prepare_sweep(config, specs, sweep_dir)
    except (ConfigError, RunDirError, SlurmError) as exc:
        fail(str(exc))
    echo(f"{config.name} [{config.profile}]: {len(run_dirs)} run(s) -> {sweep_dir}")
    if launcher == Launcher.wandb:
        from dynamics_lab.sweep.wandb_sweep import write_sweep

        echo("\n".join(write_sweep(config, sweep_dir, experiment, [*overrides, *extra])))
        raise typer.Exit(0)
    if not sweep and resume_sweep is None and launcher == Launcher.local:
        from dynamics_lab.runner import execute
        from dynamics_lab.tracking.rundir import RunDir

        result = execute(RunDir(run_dirs[0]), echo=echo)
        print_result(result.status, result.verdict, result.error, result.wall_time_s)
        raise typer.Exit(0 if result.status in ("completed", "diverged") else 1)
    from dynamics_lab.sweep.ensemble import group_jobs
    from dynamics_lab.sweep.local import launch_with_progress
    from dynamics_lab.sweep.manifest import unfinished
    from dynamics_lab.sweep.slurm import active_runs

    todo = unfinished(run_dirs, skip=active_runs(sweep_dir))
    if len(todo) < len(run_dirs):
        echo(f"{len(run_dirs) - len(todo)} run(s) finished or still running; launching {len(todo)}")
    jobs = group_jobs(todo, ensemble)
    if launcher == Launcher.slurm:
        from dynamics_lab.sweep.slurm import launch_array

        try:
            statuses = launch_array(config, sweep_dir, jobs, wait, echo)
        except SlurmError as exc:
            fail(str(exc))
        if statuses is None:  # submitted; the array runs on
            raise typer.Exit(0)
    else:
        statuses = launch_with_progress(sweep_dir, jobs, workers)
    print_summary(sweep_dir)
    bad = sum(s not in ("completed", "diverged") for s in statuses.values())
    raise typer.Exit(1 if statuses and bad == len(statuses) else 0)


def print_result(status: str, verdict: dict | None, error: str | None, wall: float) -> None:
    line = (verdict or {}).get("summary") or error or "no verdict (no phenomenon configured)"
    echo(f"[{status}, {wall:.1f}s] {line}")


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
    from dynamics_lab.worker import run_one

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
    raise typer.Exit(0 if status in ("completed", "diverged") else 1)


def print_summary(sweep_dir: Path) -> None:
    import pandas as pd

    from dynamics_lab.report.tables import sweep_table

    table = sweep_table(sweep_dir)
    hidden = ["run_id", "sweep_id", "summary", "error"]
    shown = table.drop(columns=[c for c in hidden if c in table])
    shown.columns = [c.rsplit(".", 1)[-1] for c in shown.columns]
    with pd.option_context("display.width", 200, "display.max_columns", 30,
                           "display.float_format", "{:.4g}".format):
        echo("\n" + shown.to_string(index=False))
    echo(f"\nsummary of {len(table)} run(s) in {sweep_dir}")


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
        written = write_report(runs_root, out or Path("results") / name)
    except (ReportError, RunDirError) as exc:
        fail(str(exc))
    for path in written:
        echo(f"wrote {path}")


@app.command()
def show(run_dir: Path = typer.Argument(..., help="a run directory")) -> None:
    """Config, status, verdict and last metrics of one run."""
    import yaml

    from dynamics_lab.tracking.metrics import read_metrics
    from dynamics_lab.tracking.rundir import RunDir, RunDirError

    try:
        run = RunDir.open(run_dir)
        meta, verdict, config = run.meta, run.verdict(), run.config()
    except RunDirError as exc:
        fail(str(exc))
    echo(yaml.safe_dump(config, sort_keys=False).rstrip())
    echo(f"\nstatus: {meta.get('status')}  wall: {meta.get('wall_time_s')}s  "
         f"device: {meta.get('device')}  commit: {(meta.get('git') or {}).get('commit')}")
    if meta.get("error"):
        echo(f"error: {meta['error']}")
    if verdict:
        echo(f"verdict: {verdict.get('summary')}")
    if run.metrics_path.exists():
        metrics = read_metrics(run.metrics_path)
        if len(metrics):
            last = metrics.ffill().iloc[-1]
            echo("last metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in last.items()))


@app.command()
def resume(run_dir: Path = typer.Argument(..., help="a stopped run directory")) -> None:
    """Continue a stopped run from its last checkpoint, appending to the same metrics."""
    from dynamics_lab.runner import execute
    from dynamics_lab.tracking.resume import ResumeError, prepare_resume

    try:
        run, ckpt = prepare_resume(run_dir)
    except ResumeError as exc:
        fail(str(exc))
    echo(f"resuming {run.path} from {ckpt.name}")
    result = execute(run, ckpt_path=str(ckpt), echo=echo)
    print_result(result.status, result.verdict, result.error, result.wall_time_s)
    raise typer.Exit(0 if result.status in ("completed", "diverged") else 1)


def main() -> None:  # pragma: no cover - console entry point
    app(sys.argv[1:])
