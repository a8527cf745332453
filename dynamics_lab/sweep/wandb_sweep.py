"""`--launcher wandb`: the sweep as a W&B grid sweep whose agents run `dynlab agent-run`.

`dynlab run EXP --sweep --launcher wandb` prepares the local sweep dir as usual (manifest,
pending run dirs) and writes `wandb_sweep.yaml` there: method grid, the experiment's grid as
parameters under their dotted keys, the seeds as `seed`, the verdict's key metric. Each agent
call runs `dynlab agent-run`, which reads `wandb.config`, finds the run with exactly those
values in the sweep dir (preparing the dir the same way when this machine lacks it) and runs it
through `train.worker.run_one`, like every other launcher.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import yaml

from dynamics_lab.config import ExperimentConfig, apply_overrides, build_config
from dynamics_lab.registry import PHENOMENA
from dynamics_lab.sweep.grid import expand
from dynamics_lab.sweep.manifest import MANIFEST, prepare_sweep, read_manifest
from dynamics_lab.tracking.rundir import RunDirError, safe_component

DEFAULT_METRIC = ("verdict/detected", "maximize")  # without a phenomenon
SWEEP_FILE = "wandb_sweep.yaml"


def sweep_spec(config: ExperimentConfig, sweep_dir: Path, experiment: str,
               overrides: list[str]) -> dict[str, Any]:
    """The W&B sweep configuration of this experiment's grid times seeds."""
    parameters = {key: {"values": list(values)} for key, values in config.sweep.grid.items()}
    parameters["seed"] = {"values": list(config.sweep.seeds)}
    # The number the sweep is ranked by is the phenomenon's key metric (a verdict field).
    key = PHENOMENA.get(config.phenomenon.name).key_metric if config.phenomenon else None
    metric, goal = (key.name, key.goal) if key else DEFAULT_METRIC
    command = ["${env}", "dynlab", "agent-run", experiment, "--profile", config.profile,
               "--sweep-dir", str(Path(sweep_dir).resolve())]
    for item in overrides:
        command += ["--set", item]
    spec = {"name": f"{config.name}-{Path(sweep_dir).name}", "project": config.logging.project,
            "method": "grid", "metric": {"name": metric, "goal": goal},
            "parameters": parameters, "command": command}
    if config.logging.entity:
        spec["entity"] = config.logging.entity
    return spec


def write_sweep(config: ExperimentConfig, sweep_dir: Path, experiment: str,
                overrides: list[str]) -> list[str]:
    """Write SWEEP_DIR/wandb_sweep.yaml; return what to tell the user (how to start it)."""
    if experiment.endswith((".yaml", ".yml")):
        experiment = str(Path(experiment).resolve())  # agents may start elsewhere
    path = Path(sweep_dir) / SWEEP_FILE
    spec = sweep_spec(config, sweep_dir, experiment, overrides)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    entity = f"{config.logging.entity}/" if config.logging.entity else ""
    return [f"wrote {path}; start the sweep and its agents with:",
            f"  wandb sweep --project {config.logging.project} {path}",
            f"  wandb agent {entity}{config.logging.project}/SWEEP_ID   # the id printed above; "
            "one agent per GPU or machine"]


def grid_points(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every parameter combination a grid sweep over `spec` hands to its agents."""
    keys = list(spec["parameters"])
    values = [spec["parameters"][k]["values"] for k in keys]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def config_for(config: ExperimentConfig, params: dict[str, Any]) -> ExperimentConfig:
    """The run config an agent's parameters make (the same overrides `expand` applies)."""
    return build_config(apply_overrides(config.to_dict(), list(params.items())))


def agent_params() -> dict[str, Any]:
    """This agent run's parameters: `wandb.config` of the run the agent started."""
    import wandb

    run = wandb.run or wandb.init()
    return {k: v for k, v in dict(run.config).items() if not k.startswith("_")}


def attach_config(config: dict[str, Any]) -> None:
    """Give the agent's W&B run the run's full resolved config (it starts with the grid only)."""
    import wandb

    if wandb.run is not None:
        wandb.run.config.update(config, allow_val_change=True)


def find_run(config: ExperimentConfig, sweep_dir: Path, params: dict[str, Any],
             wait_s: float = 30.0) -> Path:
    """The run dir whose overrides equal `params`; prepares the sweep dir if it is missing."""
    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / MANIFEST).exists():
        try:
            prepare_sweep(config, expand(config), sweep_dir)
        except RunDirError:
            pass  # another agent is preparing it right now
    deadline = time.time() + wait_s
    while True:
        try:
            entries = read_manifest(sweep_dir)["runs"]
            break
        except RunDirError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    for entry in entries:
        if entry["overrides"] == params:
            path = sweep_dir / safe_component(entry["run_id"], "run id")
            while not (path / "meta.json").exists() and time.time() < deadline:
                time.sleep(0.5)
            return path
    raise RunDirError(f"no run in '{sweep_dir}' has the W&B parameters {params}; "
                      f"was the sweep made from another grid?")
