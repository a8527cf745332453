"""Typed experiment configs: YAML in, profiles and dotted overrides applied, validated tree out.

Every error is one line that names the offending key and the valid choices, and is raised
before any training starts. Sections whose fields depend on a registered class (task, model,
measurements, phenomenon) are validated by that class's own `Config`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, PositiveFloat, PositiveInt

from dynamics_lab.registry import (
    MEASUREMENTS,
    MODELS,
    PHENOMENA,
    TASKS,
    UnknownNameError,
    did_you_mean,
)
from dynamics_lab.schema import (
    ConfigError,
    NamedSection,
    OptimConfig,
    Section,
    validate_section,
)

EXPERIMENTS_DIR = Path(__file__).resolve().parent.parent / "experiments"
PROFILES = ("quick", "full")


class TrainerConfig(Section):
    """Training length, batching, logging cadence and device."""

    max_steps: PositiveInt = 1000
    batch_size: PositiveInt | None = None  # None: full batch
    log_every: PositiveInt = 10  # training-step loss
    eval_every: PositiveInt = 10  # full train/val evaluation
    checkpoint_every: PositiveInt | None = None  # None: only the final checkpoint
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float64"] = "float32"
    eval_chunk: PositiveInt = 65536  # examples per forward pass during evaluation


class LoggingConfig(Section):
    """W&B wiring; `wandb: null` turns it on only when a W&B login is present."""

    wandb: bool | None = None
    project: str = "dynamics_lab"
    entity: str | None = None


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


class SweepConfig(Section):
    """A grid of dotted keys -> values, crossed with seeds; `slurm` configures that launcher."""

    grid: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [0])
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)


class ExperimentConfig(Section):
    """The whole resolved configuration of one run (or, with `sweep`, of a sweep)."""

    name: str
    description: str = ""
    profile: str = "quick"
    seed: int = 0  # model init and minibatch order; the data split has its own task.seed
    task: NamedSection
    model: NamedSection
    optim: OptimConfig = Field(default_factory=OptimConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
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


def deep_merge(base: dict, update: dict) -> dict:
    """Merge `update` into a copy of `base`: mappings merge recursively, anything else replaces."""
    out = copy.deepcopy(base)
    if "name" in update and update["name"] != out.get("name"):
        out = {}  # a section that names another class starts afresh
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """'optim.lr=0.01' -> ('optim.lr', 0.01); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"bad override '{text}': expected KEY=VALUE, e.g. optim.lr=0.01")
    try:
        return key, yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        return key, raw


def set_dotted(raw: dict, key: str, value: Any) -> None:
    """Set `a.b.c` in a nested dict.

    A null value under `measure` removes that measurement; a new `name` for a section
    (e.g. model.name=transformer) drops the keys of the class it replaces.
    """
    parts = key.split(".")
    if parts[:2] == ["sweep", "grid"] and len(parts) > 3:
        parts = [*parts[:2], ".".join(parts[2:])]  # grid keys are dotted paths themselves
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set '{key}': '{'.'.join(parts[: i + 1])}' is not a section")
        node = child
    if value is None and parts[:-1] == ["measure"]:
        node.pop(parts[-1], None)
    elif parts[-1] == "name" and node.get("name", value) != value:
        node.clear()  # another class: the old class's keys do not apply
        node["name"] = value
    else:
        node[parts[-1]] = value


def resolve(raw: dict, profile: str = "quick", overrides: list[str] | tuple = ()) -> dict:
    """Apply a profile and dotted overrides to a raw experiment dict (not yet validated)."""
    raw = copy.deepcopy(raw)
    profiles = raw.pop("profiles", None) or {}
    if profile not in profiles and profile not in PROFILES:
        valid = sorted(set(profiles) | set(PROFILES))
        raise ConfigError(
            f"unknown profile '{profile}'{did_you_mean(profile, valid)}; valid: {', '.join(valid)}"
        )
    raw = deep_merge(raw, profiles.get(profile) or {})
    raw["profile"] = profile
    return apply_overrides(raw, overrides)


def apply_overrides(raw: dict, overrides: list[str] | tuple) -> dict:
    """Apply 'key=value' strings or (key, value) pairs to a copy of a raw config dict."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        set_dotted(raw, key, value)
    return raw


def build_config(raw: dict) -> ExperimentConfig:
    """Validate a resolved raw dict into an ExperimentConfig."""
    raw = dict(raw)
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


def load_experiment(
    name_or_path: str | Path,
    profile: str = "quick",
    overrides: list[str] | tuple = (),
) -> ExperimentConfig:
    """Read an experiment YAML, apply profile and overrides, validate. Raises ConfigError."""
    path = experiment_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at top level")
    raw.setdefault("name", path.stem)
    config = build_config(resolve(raw, profile, overrides))
    check_sweep_keys(config)
    return config


def check_sweep_keys(config: ExperimentConfig) -> None:
    """Every sweep key must be a valid override: apply each grid value to a copy and validate."""
    base = config.to_dict()
    for key, values in config.sweep.grid.items():
        if not values:
            raise ConfigError(f"sweep.grid.{key}: empty list of values")
        for value in values:
            try:
                build_config(apply_overrides(base, [(key, value)]))
            except ConfigError as exc:
                raise ConfigError(f"sweep.grid.{key}={value!r}: {exc}") from None
