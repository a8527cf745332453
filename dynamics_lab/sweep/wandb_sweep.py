"""`--launcher wandb`: the sweep as a W&B sweep (grid, random or Bayes search) whose agents run
`dynlab agent-run`.

`dynlab run EXP --sweep --launcher wandb` prepares the local sweep dir and writes
`wandb_sweep.yaml` there: the method (`sweep.wandb.method`, default grid), the experiment's grid
as parameters under their dotted keys, the W&B parameter specs of `sweep.wandb.parameters`
beside them (ranges: `{min, max, distribution}`; they need `random` or `bayes`), the seeds as
`seed`, the metric (the verdict's key metric unless `sweep.wandb.metric` names another), and
`sweep.wandb.early_terminate` / `run_cap` when set. A grid sweep's runs are prepared up front,
as for every launcher; a random or Bayes search starts with none, and each agent call makes the
run its parameters name (sweep/wandb_runs.py), so `load_sweep` and `dynlab report` read it like
any sweep. Hyperband stops runs on a metric logged while they train: the verdict's, logged once
at the end, cannot drive it, so early termination needs `sweep.wandb.metric` (e.g. `val/acc`).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml

from dynamics_lab.config import ExperimentConfig, apply_overrides, build_config
from dynamics_lab.registry import PHENOMENA
from dynamics_lab.schema import ConfigError

DEFAULT_METRIC = ("verdict/detected", "maximize")  # without a phenomenon
SWEEP_FILE = "wandb_sweep.yaml"
SPEC_KEYS = frozenset({"values", "value", "min", "max", "distribution", "mu", "sigma", "q",
                       "probabilities"})  # what a W&B parameter spec may hold
DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "uniform", "q_uniform",
                 "log_uniform", "log_uniform_values", "q_log_uniform", "q_log_uniform_values",
                 "inv_log_uniform", "inv_log_uniform_values", "normal", "q_normal",
                 "log_normal", "q_log_normal")
# Distributions whose min/max are exponents (ln of the value), not values.
EXPONENT_BOUNDS = ("log_uniform", "q_log_uniform", "inv_log_uniform")


def search_parameters(config: ExperimentConfig) -> dict[str, dict]:
    """`sweep.wandb.parameters` with dotted keys (an override nests them: `optim.lr.min=...`
    arrives as {optim: {lr: {min: ...}}}); a mapping whose keys are all spec keys is a spec."""
    flat: dict[str, dict] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node and set(node) <= SPEC_KEYS:
            flat[prefix] = node
        elif isinstance(node, dict) and node:
            for key, child in node.items():
                walk(child, f"{prefix}.{key}" if prefix else str(key))
        else:
            raise ConfigError(f"sweep.wandb.parameters.{prefix}: expected a W&B parameter spec "
                              f"with keys from {', '.join(sorted(SPEC_KEYS))}, got {node!r}")

    for key, value in config.sweep.wandb.parameters.items():
        walk(value, key)
    return flat


def _endpoints(spec: dict) -> list:
    """The values a spec can give that can be checked up front (its values, or its bounds)."""
    if "values" in spec or "value" in spec:
        return list(spec["values"]) if "values" in spec else [spec["value"]]
    if spec.get("distribution") in EXPONENT_BOUNDS:
        return []  # bounds are exponents: checked per run
    return [spec[k] for k in ("min", "max") if k in spec]


def check_search(config: ExperimentConfig, parameters: dict[str, dict]) -> None:
    """One-line ConfigErrors for a search W&B would refuse or that could not run: a range in a
    grid, an unknown distribution, bounds the config refuses, hyperband on the verdict."""
    search = config.sweep.wandb
    for key, spec in parameters.items():
        where = f"sweep.wandb.parameters.{key}"
        if key == "seed" or key.startswith("sweep."):
            raise ConfigError(f"{where}: not a parameter a W&B sweep can set (seeds come from "
                              "sweep.seeds)")
        distribution = spec.get("distribution")
        if distribution is not None and distribution not in DISTRIBUTIONS:
            raise ConfigError(f"{where}: unknown distribution {distribution!r}; valid: "
                              f"{', '.join(DISTRIBUTIONS)}")
        if "values" in spec and not isinstance(spec["values"], list):
            raise ConfigError(f"{where}.values: expected a list, got {spec['values']!r}")
        ranged = not ("values" in spec or "value" in spec)
        if ranged and not {"min", "max"} <= set(spec) and "mu" not in spec:
            raise ConfigError(f"{where}: a range needs min and max (or values)")
        if ranged and search.method == "grid":
            raise ConfigError(f"{where}: a grid sweep needs values; for a range set "
                              "sweep.wandb.method=random or bayes")
        for value in _endpoints(spec):
            config_for(config, {key: value})  # a value the config refuses: ConfigError
    if search.metric is not None and search.goal is None:
        raise ConfigError(f"sweep.wandb.goal: say whether to minimize or maximize "
                          f"sweep.wandb.metric={search.metric}")
    if search.early_terminate is not None:
        if search.early_terminate.get("type") != "hyperband":
            raise ConfigError("sweep.wandb.early_terminate: W&B knows type: hyperband, got "
                              f"{search.early_terminate!r}")
        if search.metric is None:
            raise ConfigError("sweep.wandb.early_terminate: hyperband stops runs on a metric "
                              "logged while they train, and the verdict is logged once at the "
                              "end; set sweep.wandb.metric (e.g. val/acc) and sweep.wandb.goal")


def sweep_metric(config: ExperimentConfig) -> dict[str, str]:
    """What the search optimizes: `sweep.wandb.metric`, else the phenomenon's key metric."""
    search = config.sweep.wandb
    if search.metric is not None:
        return {"name": search.metric, "goal": search.goal}
    key = PHENOMENA.get(config.phenomenon.name).key_metric if config.phenomenon else None
    name, goal = (key.name, key.goal) if key else DEFAULT_METRIC
    return {"name": name, "goal": search.goal or goal}


def sweep_spec(config: ExperimentConfig, sweep_dir: Path, experiment: str,
               overrides: list[str]) -> dict[str, Any]:
    """The W&B sweep configuration of this experiment's grid (and ranges) times seeds."""
    search = config.sweep.wandb
    extra = search_parameters(config)
    check_search(config, extra)
    parameters = {key: {"values": list(values)} for key, values in config.sweep.grid.items()}
    parameters.update(extra)
    parameters["seed"] = {"values": list(config.sweep.seeds)}
    command = ["${env}", "dynlab", "agent-run", experiment, "--profile", config.profile,
               "--sweep-dir", str(Path(sweep_dir).resolve())]
    for item in overrides:
        command += ["--set", item]
    spec = {"name": f"{config.name}-{Path(sweep_dir).name}", "project": config.logging.project,
            "method": search.method, "metric": sweep_metric(config),
            "parameters": parameters, "command": command}
    if search.early_terminate is not None:
        spec["early_terminate"] = dict(search.early_terminate)
    if search.run_cap is not None:
        spec["run_cap"] = search.run_cap
    if config.logging.entity:
        spec["entity"] = config.logging.entity
    return spec


def prepared(config: ExperimentConfig, specs: list, resuming: bool = False) -> list:
    """The runs to prepare before any agent starts: the grid's, or none for a random or Bayes
    search (its agents make the runs they sample)."""
    if config.sweep.wandb.method == "grid":
        return specs
    if resuming:
        raise ConfigError("a W&B random or Bayes search goes on with more `wandb agent` calls "
                          "on its sweep id; --resume-sweep finishes grid sweeps")
    return []


def write_sweep(config: ExperimentConfig, sweep_dir: Path, experiment: str,
                overrides: list[str]) -> list[str]:
    """Write SWEEP_DIR/wandb_sweep.yaml; return what to tell the user (how to start it)."""
    from dynamics_lab.sweep.wandb_runs import record_search

    if experiment.endswith((".yaml", ".yml")):
        experiment = str(Path(experiment).resolve())  # agents may start elsewhere
    path = Path(sweep_dir) / SWEEP_FILE
    spec = sweep_spec(config, sweep_dir, experiment, overrides)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    if spec["method"] != "grid":
        record_search(sweep_dir, config)
    entity = f"{config.logging.entity}/" if config.logging.entity else ""
    return [f"wrote {path} ({spec['method']} search); start the sweep and its agents with:",
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
