"""Raw experiment dicts before validation: profiles merged in, dotted `KEY=VALUE` overrides set.

Not OmegaConf: it would add a package (and its parser runtime) for three rules it lacks (a new
`name` drops the old class's keys, `measure.X=null` removes X, sweep grid keys stay dotted)."""

from __future__ import annotations

import copy
from typing import Any

from dynamics_lab import strict_yaml
from dynamics_lab.registry import did_you_mean
from dynamics_lab.schema import ConfigError

PROFILES = ("quick", "full")


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
        return key, strict_yaml.loads(raw, f"override '{key}'") if raw.strip() else None
    except strict_yaml.YAMLSyntaxError:
        return key, raw
    except strict_yaml.YAMLInputError as exc:  # a duplicate key, an alias bomb, deep nesting
        raise ConfigError(str(exc)) from None


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
    elif len(parts) > 1 and parts[-1] == "name" and node.get("name", value) != value:
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
