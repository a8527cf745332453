"""W&B wiring through Lightning's WandbLogger: on when asked or when a login is present."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from dynamics_lab.tracking.rundir import Status


def has_login() -> bool:
    """True when a W&B API key is in the environment or ~/.netrc (no network, no import)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_enabled(setting: bool | None) -> bool:
    """`--wandb` forces it on, `--no-wandb` off; unset means on only with a login."""
    if os.environ.get("WANDB_MODE") == "disabled":
        return False
    return has_login() if setting is None else setting


def make_wandb_logger(run_dir: Path, config: dict, run_name: str, group: str,
                      resume_id: str | None = None):
    """A WandbLogger writing under the run dir; offline (with a sync hint) when no login."""
    from lightning.pytorch.loggers import WandbLogger

    offline = not has_login() or os.environ.get("WANDB_MODE") == "offline"
    logging = config.get("logging", {})
    logger = WandbLogger(
        project=logging.get("project", "dynamics_lab"), entity=logging.get("entity"),
        name=run_name, group=group, job_type=config.get("name"), save_dir=str(run_dir),
        offline=offline, id=resume_id, resume="allow" if resume_id else None, config=config,
    )
    return logger, offline


def sync_hint(run_dir: Path) -> str:
    offline_runs = f"{Path(run_dir) / 'wandb'}/offline-run-*"
    return f"W&B ran offline (no login); upload with: wandb sync {offline_runs}"


def finish_wandb(logger: Any, verdict: dict | None, status: Status) -> None:
    """Put the verdict and status into the run summary and close the W&B run."""
    run = logger.experiment
    summary = {f"verdict/{k}": v for k, v in (verdict or {}).items() if v is not None}
    summary["status"] = str(status)
    run.summary.update(summary)
    run.finish(exit_code=0 if Status(status).finished else 1)
