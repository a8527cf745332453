"""Typed experiment configs: YAML in, profiles and dotted overrides applied, validated tree out.

Every error is one line that names the offending key and the valid choices, and is raised
before any training starts. Sections whose fields depend on a registered class (task, model,
measurements, phenomenon) are validated by that class's own `Config`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from dynamics_lab import strict_yaml
from dynamics_lab.choices import DEVICES
from dynamics_lab.overrides import PROFILES as PROFILES
from dynamics_lab.overrides import apply_overrides, resolve
from dynamics_lab.overrides import parse_override as parse_override
from dynamics_lab.registry import (
    MEASUREMENTS,
    MODELS,
    PHENOMENA,
    TASKS,
    PluginError,
    UnknownNameError,
    did_you_mean,
    import_plugins,
)
from dynamics_lab.schema import (
    ConfigError,
    NamedSection,
    OptimConfig,
    Section,
    Seed,
    validate_section,
)

EXPERIMENTS_DIR = Path(__file__).resolve().parent.parent / "experiments"


class TrainerConfig(Section):
    """Training length, batching, logging cadence and device."""

    max_steps: PositiveInt = 1000
    batch_size: PositiveInt | None = None  # None: full batch
    log_every: PositiveInt = 10  # training-step loss
    eval_every: PositiveInt = 10  # full train/val evaluation
    checkpoint_every: PositiveInt | None = None  # None: only the final checkpoint
    device: Literal[DEVICES] = "auto"
    dtype: Literal["float32", "float64"] = "float32"
    eval_chunk: PositiveInt = 65536  # examples per forward pass during evaluation


class LoggingConfig(Section):
    """W&B wiring; `wandb: null` turns it on only when a W&B login is present."""

    wandb: bool | None = None
    project: str = "dynamics_lab"
    entity: str | None = None
    # Stored with the run (config.yaml), so a resumed run and a W&B agent's run keep them.
    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list)  # W&B's own limits on a tag
    notes: str | None = None


class SlurmConfig(Section):
    """Slurm job-array settings for `--launcher slurm` (submitit); one array task per job."""

    cluster: Literal["slurm", "local", "debug"] | None = None  # None: slurm, if srun is here
    partition: str | None = None
    time_min: PositiveInt = 60  # per array task
    gpus_per_run: int = Field(0, ge=0)
    cpus_per_run: PositiveInt = 1
    mem_gb: PositiveFloat | None = None
    array_parallelism: PositiveInt = 64  # array tasks running at once
    setup: list[str] = Field(default_factory=list)  # shell lines before each task (module load ...)
    additional: dict[str, Any] = Field(default_factory=dict)  # more sbatch options (account, qos)


class WandbSearchConfig(Section):
    """The W&B sweep of `--launcher wandb` (checked in sweep/wandb_sweep.py): the search method,
    W&B parameter specs beside the grid (dotted key -> {min, max, distribution} or {values}),
    the metric it optimizes (default: the phenomenon's key metric) and early termination."""

    method: Literal["grid", "random", "bayes"] = "grid"
    parameters: dict[str, Any] = Field(default_factory=dict)
    metric: str | None = None
    goal: Literal["minimize", "maximize"] | None = None
    early_terminate: dict[str, Any] | None = None  # e.g. {type: hyperband, min_iter: 3}
    run_cap: PositiveInt | None = None


class SweepConfig(Section):
    """A grid of dotted keys -> values, crossed with seeds; `slurm` and `wandb` configure those
    launchers."""

    grid: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)
    wandb: WandbSearchConfig = Field(default_factory=WandbSearchConfig)
    max_runs: PositiveInt = 1000  # a bigger grid x seeds is refused (a range typed too long)

    @model_validator(mode="after")
    def _not_too_many(self):
        sizes = [len(v) for v in self.grid.values()] + [len(self.seeds)]
        if math.prod(sizes) > self.max_runs:
            n, shape = math.prod(sizes), " x ".join(map(str, sizes))
            raise ValueError(f"{n} runs (grid x seeds: {shape}) is over sweep.max_runs="
                             f"{self.max_runs}; to mean it, pass --set sweep.max_runs={n}")
        return self


class ExperimentConfig(Section):
    """The whole resolved configuration of one run (or, with `sweep`, of a sweep)."""

    name: str
    description: str = ""
    profile: str = "quick"
    seed: Seed = 0  # model init and minibatch order; the data split has its own task.seed
    task: NamedSection
    model: NamedSection
    optim: OptimConfig = Field(default_factory=OptimConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    # Modules or .py files to import before the named sections are looked up (.py made absolute
    # at load time, so sweep workers import the same file from any directory).
    plugins: list[str] = Field(default_factory=list)
    measure: dict[str, NamedSection] = Field(default_factory=dict)
    phenomenon: NamedSection | None = None
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    sweep: SweepConfig = Field(default_factory=SweepConfig)

    def to_dict(self) -> dict:
        """Plain nested dict of the full config, including each registered section's fields."""
        return self.model_dump(mode="json", serialize_as_any=True)


def _named(registry, data: Any, prefix: str, name: str | None = None) -> NamedSection:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix}: expected a mapping with a 'name', got {data!r}")
    data = dict(data)
    if name is not None:
        data.setdefault("name", name)
    if "name" not in data:
        raise ConfigError(f"{prefix}.name is missing; valid: {', '.join(registry.names())}")
    try:
        cls = registry.get(str(data["name"]))
    except UnknownNameError as exc:
        raise ConfigError(f"{prefix}.name: {exc}") from None
    return validate_section(cls.Config, data, prefix)


# -- loading ----------------------------------------------------------------------------------


def experiment_path(name_or_path: str | Path) -> Path:
    """Resolve an experiment name from experiments/ or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"experiment file not found: {path}")
        return path
    candidate = EXPERIMENTS_DIR / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    names = list_experiments()
    raise ConfigError(
        f"unknown experiment '{name_or_path}'{did_you_mean(str(name_or_path), names)}; "
        f"valid: {', '.join(names)}"
    )


def list_experiments() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))


def build_config(raw: dict) -> ExperimentConfig:
    """Validate a resolved raw dict into an ExperimentConfig (importing its plugins first)."""
    raw = dict(raw)
    plugins = raw.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError("plugins: expected a list of module names or .py paths")
    try:
        import_plugins(plugins)
    except PluginError as exc:
        raise ConfigError(f"plugins: {exc}") from None
    named = {
        "task": _named(TASKS, raw.pop("task", None), "task"),
        "model": _named(MODELS, raw.pop("model", None), "model"),
    }
    measure = raw.pop("measure", None) or {}
    if not isinstance(measure, dict):
        raise ConfigError("measure: expected a mapping of measurement name -> settings")
    named["measure"] = {
        key: _named(MEASUREMENTS, value or {}, f"measure.{key}", name=key)
        for key, value in measure.items()
    }
    phenomenon = raw.pop("phenomenon", None)
    if phenomenon is not None:
        named["phenomenon"] = _named(PHENOMENA, phenomenon, "phenomenon")
    # Registered sections are validated above; pydantic keeps those instances as they are.
    return validate_section(ExperimentConfig, {**raw, **named}, "")


def absolute_plugin(plugin: Any, base: Path) -> Any:
    """A .py plugin as an absolute path: next to the experiment file if it is there, else
    relative to the working directory. Module names stay as they are."""
    if not isinstance(plugin, str) or not plugin.endswith(".py"):
        return plugin
    path = Path(plugin).expanduser()
    if not path.is_absolute():
        path = base / path if (base / path).is_file() else Path.cwd() / path
    return str(path.resolve())


def load_experiment(
    name_or_path: str | Path,
    profile: str = "quick",
    overrides: list[str] | tuple = (),
    plugins: list[str] | tuple = (),
    force: bool = False,
) -> ExperimentConfig:
    """Read an experiment YAML, apply profile and overrides, validate. Raises ConfigError.
    `force` lets through a run whose memory estimate exceeds this machine."""
    path = experiment_path(name_or_path)
    try:
        raw = strict_yaml.read(path) or {}
    except strict_yaml.YAMLInputError as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at top level")
    raw.setdefault("name", path.stem)
    raw = resolve(raw, profile, overrides)
    raw["plugins"] = [absolute_plugin(p, path.parent) for p in
                      [*(raw.get("plugins") or []), *plugins]]
    config = build_config(raw)
    check_pairing(config, force)
    check_sweep_keys(config, force)
    return config


def check_pairing(config: ExperimentConfig, force: bool = False) -> None:
    """Run the model once on two dummy inputs shaped like the task's.

    A task/model pair that cannot work together (token inputs into a dense layer, a wrong
    output width) fails here with one line, before anything is written; so does one whose
    memory estimate exceeds the machine (unless `force`). The model is built on the meta
    device (shapes only, no memory) and, when its constructor needs real values (and the
    task's data fits), on the CPU with a forked RNG, so the run's own seeding is untouched.
    """
    from dynamics_lab.footprint import check_data, check_model, dry_forward

    task = TASKS.build(config.task, batch_size=config.trainer.batch_size, seed=config.seed)
    check_data(config, task, force)
    spec = task.spec
    shape = (2, *spec.input_shape)
    try:
        model, out, per_example = dry_forward(config, spec, shape)
    except Exception as exc:  # any failure here is the pairing's, reported as config
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"model.name={config.model.name} cannot take task.name="
                          f"{config.task.name} (inputs {shape[1:]}, "
                          f"{'tokens' if spec.n_tokens else 'floats'}): {reason}") from None
    if out.shape[0] != shape[0] or out.reshape(shape[0], -1).shape[1] != spec.n_outputs:
        raise ConfigError(f"model.name={config.model.name} gives outputs of shape "
                          f"{tuple(out.shape[1:])} but task.name={config.task.name} needs "
                          f"{spec.n_outputs}")
    check_model(config, task, model, per_example, force)


def check_sweep_keys(config: ExperimentConfig, force: bool = False) -> None:
    """Every sweep key must be a valid override: apply each grid value to a copy and validate."""
    base = config.to_dict()
    for key, values in config.sweep.grid.items():
        if not values:
            raise ConfigError(f"sweep.grid.{key}: empty list of values")
        seen = [json.dumps(v, sort_keys=True) for v in values]
        repeated = sorted({v for v in seen if seen.count(v) > 1})
        if repeated:
            raise ConfigError(f"sweep.grid.{key}: repeated value(s) {', '.join(repeated)}; "
                              "each grid value names one run")
        for value in values:
            try:
                variant = build_config(apply_overrides(base, [(key, value)]))
                if key.split(".")[0] in ("task", "model", "trainer", "optim"):
                    check_pairing(variant, force)
            except ConfigError as exc:
                raise ConfigError(f"sweep.grid.{key}={value!r}: {exc}") from None
