"""W&B wiring: runs through Lightning's WandbLogger, a sweep report as one more run of the
sweep's group; on when asked or when a login is present, offline into the run (sweep) directory
without one."""

from __future__ import annotations

import dataclasses
import json
import math
import netrc
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dynamics_lab.tracking.rundir import Status


def has_login() -> bool:
    """True when a W&B API key is in the environment or ~/.netrc for the W&B host.

    The stdlib's netrc reads the file `wandb login` writes; asking wandb itself would import it
    (about a second) in commands that only decide whether to turn W&B on."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    try:
        return netrc.netrc().authenticators(host or "api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_enabled(setting: bool | None) -> bool:
    """`--wandb` forces it on, `--no-wandb` off; unset means on only with a login."""
    if os.environ.get("WANDB_MODE") == "disabled":
        return False
    return has_login() if setting is None else setting


def is_offline() -> bool:
    """W&B runs offline without a login, or when WANDB_MODE=offline asks for it."""
    return not has_login() or os.environ.get("WANDB_MODE") == "offline"


def tag_overrides(tags: list[str], notes: str | None) -> list[str]:
    """`--tag`/`--notes` as overrides of logging.tags / logging.notes (JSON, a YAML subset, so
    a colon or a bracket in the text stays text); none for flags not given."""
    return ([f"logging.tags={json.dumps(tags)}"] if tags else []) + (
        [f"logging.notes={json.dumps(notes)}"] if notes is not None else [])


def verdict_summary(config: dict, verdict: dict | None = None) -> dict[str, Any]:
    """`verdict/<field>` for EVERY field of the config's phenomenon's verdict, missing or null
    ones as NaN, so a W&B sweep's metric exists on runs that did not show the phenomenon (or
    failed) and sorts last rather than vanishing. {} without a phenomenon and without a verdict."""
    from dynamics_lab.phenomena.dashboard import VERDICT_PREFIX

    name = (config.get("phenomenon") or {}).get("name")
    fields: dict[str, Any] = {}
    if name:
        from dynamics_lab.registry import PHENOMENA

        verdict_type = PHENOMENA.get(name).verdict_type
        fields = {f.name: None for f in dataclasses.fields(verdict_type)}
        fields.update(phenomenon=name, detected=None)
    fields.update(verdict or {})
    return {VERDICT_PREFIX + k: math.nan if v is None else v for k, v in fields.items()}


def make_wandb_logger(run_dir: Path, config: dict, run_name: str, group: str,
                      resume_id: str | None = None):
    """A WandbLogger writing under the run dir, its run started with every verdict key in the
    summary (NaN until the verdict) and every metric plotted against the training step;
    offline (with a sync hint) when no login. Tags and notes come from logging.tags and
    logging.notes (`dynlab run --tag/--notes` set them), else from WANDB_TAGS and WANDB_NOTES,
    which wandb.init reads when given none. Each call starts its own W&B run, also beside
    others in one process (an ensemble's members), which Lightning's WandbLogger would
    otherwise attach to the run already open."""
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    from dynamics_lab.phenomena.dashboard import STEP_METRIC

    offline = is_offline()
    logging = config.get("logging", {})
    project = logging.get("project", "dynamics_lab")
    run = wandb.init(project=project, entity=logging.get("entity"), name=run_name, group=group,
                     job_type=config.get("name"), dir=str(run_dir), config=config,
                     tags=logging.get("tags") or None, notes=logging.get("notes"),
                     mode="offline" if offline else None, id=resume_id,
                     resume="allow" if resume_id else None, reinit="create_new")
    logger = WandbLogger(project=project, name=run_name, save_dir=str(run_dir),
                         offline=offline, experiment=run)
    # One training step logs up to three history rows (evaluation, measurements, batch loss),
    # so W&B's own `_step` is no training step: every metric is plotted against ours.
    run.define_metric(STEP_METRIC)
    run.define_metric("*", step_metric=STEP_METRIC, step_sync=True)
    run.summary.update(verdict_summary(config))
    return logger, offline


def sync_hint(run_dir: Path | str, pattern: str = "wandb/offline-run-*") -> str:
    return f"W&B ran offline (no login); upload with: wandb sync {Path(run_dir) / pattern}"


def sweep_sync_hint(sweep_dir: Path) -> str | None:
    """One sync hint for a whole sweep whose runs logged to W&B offline (None if none did)."""
    from dynamics_lab.tracking.rundir import RunDir, RunDirError, read_manifest

    try:
        run_ids = [entry["run_id"] for entry in read_manifest(sweep_dir).get("runs", [])]
    except RunDirError:
        return None
    for run_id in run_ids:
        try:
            if RunDir(Path(sweep_dir) / run_id).meta.get("wandb_offline"):
                return sync_hint(sweep_dir, "*/wandb/offline-run-*")
        except RunDirError:
            continue
    return None


ARTIFACT_FILES = ("config.yaml", "verdict.json", "metrics.parquet")


def finish_wandb(logger: Any, verdict: dict | None, status: Status) -> None:
    """Put the verdict (every field of the phenomenon's, null as NaN) and the status into the
    run summary, log the run's files as an artifact and close the W&B run."""
    run = logger.experiment
    summary = verdict_summary(dict(run.config), verdict)
    summary["status"] = str(status)
    run.summary.update(summary)
    if getattr(logger, "save_dir", None):  # the run directory (make_wandb_logger sets it)
        log_run_files(run, Path(logger.save_dir))
    run.finish(exit_code=0 if Status(status).finished else 1)


def log_run_files(run: Any, run_dir: Path) -> list[str]:
    """config.yaml, verdict.json and metrics.parquet (written now from metrics.csv) as one
    artifact of type `run-files`, named after the run; the files present are returned."""
    import wandb

    from dynamics_lab.tracking.metrics import write_parquet

    if (run_dir / "metrics.csv").exists():
        write_parquet(run_dir / "metrics.csv", run_dir / "metrics.parquet")
    files = [name for name in ARTIFACT_FILES if (run_dir / name).is_file()]
    if files:
        artifact = wandb.Artifact(f"run-{run.id}", type="run-files",
                                  metadata={"run_dir": str(run_dir)})
        for name in files:
            artifact.add_file(str(run_dir / name), name=name)
        run.log_artifact(artifact)
    return files


def report_frame(table: Any) -> Any:
    """A summary table W&B's Table takes: numbers stay numbers, flags stay booleans, anything
    else (lists, mixed columns) becomes text, missing stays missing."""
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    def missing(v: Any) -> bool:
        return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))

    frame = table.copy()
    for column in frame.columns:
        values = frame[column]
        if is_bool_dtype(values):
            frame[column] = [None if missing(v) else bool(v) for v in values]
        elif is_numeric_dtype(values):
            continue
        elif all(isinstance(v, bool) for v in values if not missing(v)):
            frame[column] = pd.Series([None if missing(v) else v for v in values], dtype=object,
                                      index=values.index)
        else:
            frame[column] = [None if missing(v) else str(v) for v in values]
    return pd.DataFrame(frame)


def log_report(sweep_dir: Path, config: dict, table: Any, images: list[Path]) -> str:
    """Log a sweep report as one W&B run (job_type `report`, in the sweep's group): the summary
    table as a W&B Table, each figure as an image. Returns the run's URL, or a sync hint when
    offline."""
    import wandb

    logging = config.get("logging") or {}
    offline = is_offline()
    sweep_dir = Path(sweep_dir)
    run = wandb.init(
        project=logging.get("project", "dynamics_lab"), entity=logging.get("entity"),
        group=sweep_dir.name, job_type="report", name=f"report-{sweep_dir.name}",
        dir=str(sweep_dir), mode="offline" if offline else "online",
        config={"experiment": config.get("name"), "sweep_id": sweep_dir.name})
    try:
        logged: dict[str, Any] = {"summary": wandb.Table(dataframe=report_frame(table))}
        for path in images:
            logged[f"figures/{Path(path).stem}"] = wandb.Image(str(path))
        run.log(logged)
    finally:
        run.finish()
    return sync_hint(sweep_dir) if offline else f"logged the report to W&B: {run.url}"
