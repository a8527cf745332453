"""The base config types every plugin builds on: sections, named sections, the optimizer
section, and the one-line ConfigError. Tasks, models, measurements and detectors import from here,
not from `config` (which assembles the whole experiment tree)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError

from dynamics_lab.registry import did_you_mean


class ConfigError(ValueError):
    """A bad experiment name, key, value or override; the message is one line."""


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class NamedSection(Section):
    """A section that picks a registered class by `name`; subclasses add that class's fields."""

    name: str


class OptimConfig(Section):
    """Optimizer; `gd` is SGD with momentum 0, meant for full-batch training."""

    name: Literal["adamw", "adam", "sgd", "gd"] = "adamw"
    lr: PositiveFloat = 1e-3
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: PositiveFloat = 1e-8
    momentum: float = Field(0.0, ge=0, lt=1)


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
    shown = f" (got {got!r})" if not isinstance(got, dict) else ""
    return f"{key}: {err['msg']}{shown}"


def validate_section(model: type[BaseModel], data: Any, prefix: str) -> BaseModel:
    """Validate `data` into `model`, turning pydantic's report into a one-line ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix}: expected a mapping, got {data!r}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc.errors()[0], model, prefix)) from None
