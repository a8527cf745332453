"""The commands that read what runs left: `list` (what this install knows), `show` (one run),
`report` (tables and figures of a sweep) and `dashboard` (its W&B panels)."""

from __future__ import annotations

from pathlib import Path

import typer

from dynamics_lab.cli.common import complete_experiment, echo, fail
from dynamics_lab.tracking.rundir import Status


def list_() -> None:
    """Experiments, tasks, models, measurements and phenomena this install knows."""
    from dynamics_lab import catalog
    from dynamics_lab.config import list_experiments
    from dynamics_lab.registry import MEASUREMENTS, MODELS, PHENOMENA, TASKS

    echo("experiments:  " + ", ".join(list_experiments()))
    for registry in (TASKS, MODELS, MEASUREMENTS, PHENOMENA):  # names read from source: no torch
        echo(f"{registry.plural + ':':13} " + (", ".join(catalog.names(registry)) or "-"))


def report(
    experiment: str = typer.Argument(..., help="experiment name (its runs live in runs/NAME)",
                                     autocompletion=complete_experiment),
    runs: Path | None = typer.Option(None, help="runs dir or sweep dir (default runs/NAME)"),
    out: Path | None = typer.Option(
        None, help="output dir (default results/NAME/SWEEP_ID, copied to results/NAME when it is "
                   "the newest sweep reported)"),
    wandb: bool | None = typer.Option(
        None, "--wandb/--no-wandb", help="also log the figures and the summary table as one W&B "
                                         "run in the sweep's group (default: as the sweep ran)"),
) -> None:
    """Summary table and figures of the newest sweep into results/EXPERIMENT/SWEEP_ID/ (and W&B)."""
    from dynamics_lab.report import ReportError, write_report
    from dynamics_lab.tracking.rundir import RunDirError

    name = Path(experiment).stem
    try:
        written = write_report(runs_root(name, runs), out, echo=echo, wandb=wandb,
                               results=Path("results") / name)
    except (ReportError, RunDirError) as exc:
        fail(str(exc))
    for path in written:
        echo(f"wrote {path}")


def runs_root(name: str, runs: Path | None) -> Path:
    """--runs, else runs/NAME under the runs root; an error when it is not a directory."""
    from dynamics_lab.tracking.rundir import default_runs_root

    root = runs or default_runs_root() / name
    if not root.is_dir():
        fail(f"no runs at '{root}' (run `dynlab run {name} --sweep` first, or pass --runs)")
    return root


def dashboard(
    experiment: str = typer.Argument(..., help="experiment name (its runs live in runs/NAME)",
                                     autocompletion=complete_experiment),
    runs: Path | None = typer.Option(None, help="runs dir or sweep dir (default runs/NAME)"),
    publish: bool | None = typer.Option(
        None, "--publish/--no-publish", help="save it as a W&B workspace (default: when a W&B "
                                             "login is present); always written to dashboard.json"),
) -> None:
    """The phenomenon's W&B panels for the newest sweep: SWEEP_DIR/dashboard.json, and a saved
    W&B workspace filtered to the sweep's group."""
    from dynamics_lab.report.dashboard import DashboardError, describe, write_dashboard
    from dynamics_lab.schema import ConfigError
    from dynamics_lab.tracking.rundir import RunDirError
    from dynamics_lab.tracking.wandb import wandb_enabled

    name = Path(experiment).stem
    try:
        path, url = write_dashboard(runs_root(name, runs),
                                    wandb_enabled(None) if publish is None else publish)
    except (DashboardError, ConfigError, RunDirError) as exc:
        fail(str(exc))
    echo("\n".join([*describe(path), f"wrote {path}"]))
    echo(f"published: {url}" if url else f"to publish it: `wandb login`, then `dynlab dashboard "
                                         f"{name} --runs {path.parent} --publish`")


def show(run_dir: Path = typer.Argument(..., help="a run directory"),
         config: bool = typer.Option(False, "--config", help="also print the resolved config")
         ) -> None:
    """Status, verdict and last metrics of one run (and its config with --config)."""
    import yaml

    from dynamics_lab.tracking.metrics import last_run_metrics
    from dynamics_lab.tracking.progress import running_for
    from dynamics_lab.tracking.resume import still_running
    from dynamics_lab.tracking.rundir import RunDir, RunDirError

    try:
        run = RunDir.open(run_dir)
        meta, verdict = run.meta, run.verdict()
        metrics = last_run_metrics(run.metrics_path, run.parquet_path)
        resolved = run.config() if config else None
    except RunDirError as exc:
        fail(str(exc))
    if run.status == Status.RUNNING:
        time_ = running_for(run)
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
    if metrics is not None:  # read without pandas: `show` answers in well under a second
        step, last = metrics
        echo(f"last metrics (step {step}): " + ", ".join(f"{k}={v:.4g}" for k, v in last.items()))
    if resolved is not None:
        echo("\n" + yaml.safe_dump(resolved, sort_keys=False).rstrip())
