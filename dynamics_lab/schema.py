"""The base config types every plugin builds on: sections, named sections, the optimizer
section, and the one-line ConfigError. Tasks, models, measurements and detectors import from here,
not from `config` (which assembles the whole experiment tree)."""

from __future__ import annotations

import math
import types
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from dynamics_lab.registry import did_you_mean


class ConfigError(ValueError):
    """A bad experiment name, key, value or override; the message is one line."""


MAX_SEED = 2**32 - 1  # numpy's and Lightning's seeding take 0 .. 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


def admits_bool(annotation: Any) -> bool:
    """Whether a field's type takes a boolean as itself (not as 0/1, pydantic's lax reading)."""
    if annotation is bool or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return any(isinstance(a, bool) for a in typing.get_args(annotation))
    if origin in (Union, types.UnionType, Annotated):
        return any(admits_bool(a) for a in typing.get_args(annotation))
    return False


def check_plain_value(value: Any, allow_bool: bool, where: str = "") -> None:
    """Refuse what cannot train, wherever it sits in a value: NaN/inf, and booleans as numbers.

    Sections (mappings validated by their own model) are checked there; free-form mappings
    (the sweep grid, sbatch options) are walked here, naming the inner key.
    """
    at = f" at '{where}'" if where else ""
    if isinstance(value, bool):
        if not allow_bool:
            raise ValueError(f"expected a number or text{at}, got the boolean {value}")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number{at}, got {value}")
    elif isinstance(value, (list, tuple)):
        for item in value:
            check_plain_value(item, allow_bool, where)
    elif isinstance(value, dict) and where is not None:
        for key, item in value.items():
            check_plain_value(item, True, f"{where}.{key}" if where else str(key))


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated.

    Every field also refuses non-finite numbers and booleans where it expects a number
    (pydantic would read `max_steps: true` as 1).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    @field_validator("*", mode="before")
    @classmethod
    def _plain_values(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        annotation = field.annotation if field is not None else Any
        allow_bool = admits_bool(annotation)
        if isinstance(value, (list, tuple)):
            args = typing.get_args(annotation)
            allow_bool = any(admits_bool(a) for a in args) if args else allow_bool
        if isinstance(value, dict) and typing.get_origin(annotation) is not dict:
            return value  # a sub-section: its own model checks its fields by name
        check_plain_value(value, allow_bool)
        return value


class NamedSection(Section):
    """A section that picks a registered class by `name`; subclasses add that class's fields."""

    name: str


class OptimConfig(Section):
    """Optimizer; `gd` is SGD with momentum 0, meant for full-batch training."""

    name: Literal["adamw", "adam", "sgd", "gd"] = "adamw"
    lr: PositiveFloat = 1e-3
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (
        0.9, 0.999)
    eps: PositiveFloat = 1e-8
    momentum: float = Field(0.0, ge=0, lt=1)
    # Step-size schedule: linear warmup from lr / warmup_steps to lr over the first warmup_steps
    # updates, then lr x decay_factor from each of decay_steps on (a piecewise-constant decay).
    warmup_steps: int = Field(0, ge=0)
    decay_steps: list[PositiveInt] = Field(default_factory=list)
    decay_factor: float = Field(0.1, gt=0, le=1)

    @property
    def scheduled(self) -> bool:
        return bool(self.warmup_steps or self.decay_steps)

    def lr_at(self, step: int) -> float:
        """The step size of update `step` (the one from step to step + 1) under the schedule;
        derived from the step alone, so a resumed run needs no scheduler state."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        return self.lr * warm * self.decay_factor ** sum(step >= s for s in self.decay_steps)


# -- error formatting -------------------------------------------------------------------------


def _valid_keys(model: type[BaseModel]) -> list[str]:
    return sorted(model.model_fields)


def _format_error(err: dict, model: type[BaseModel], prefix: str) -> str:
    loc = [str(p) for p in err["loc"]]
    key = ".".join([prefix, *loc]) if prefix else ".".join(loc)
    if err["type"] == "extra_forbidden":
        # Walk to the sub-model that rejected the key, so the suggestion lists its own fields.
        owner: Any = model
        for part in loc[:-1]:
            field = owner.model_fields.get(part) if isinstance(owner, type) else None
            ann = getattr(field, "annotation", None)
            owner = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if owner is None:
            return f"unknown key '{key}'"
        valid = _valid_keys(owner)
        parent = key.rsplit(".", 1)[0] + "." if "." in key else ""
        valid = [parent + v for v in valid]
        return f"unknown key '{key}'{did_you_mean(key, valid)}; valid keys: {', '.join(valid)}"
    got = err.get("input")
    message = err["msg"].removeprefix("Value error, ")
    shown = f" (got {got!r})" if not isinstance(got, dict) and "got" not in message else ""
    return f"{key}: {message}{shown}"


def validate_section(model: type[BaseModel], data: Any, prefix: str) -> BaseModel:
    """Validate `data` into `model`, turning pydantic's report into a one-line ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix}: expected a mapping, got {data!r}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc.errors()[0], model, prefix)) from None
