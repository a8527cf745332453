"""The keys a phase search may sweep: known to the config, numeric, and varied by a run."""

from __future__ import annotations

from dataclasses import replace

from dynamics_lab.config import ExperimentConfig, apply_overrides, build_config, check_pairing
from dynamics_lab.frames import flatten
from dynamics_lab.phenomena.phase_lattice import Axis
from dynamics_lab.schema import ConfigError
from dynamics_lab.sweep.manifest import IGNORED_SECTIONS

PAIRED = ("task", "model", "trainer", "optim")  # keys whose values must suit the task/model
INERT = ("name", "description", "profile", "plugins")  # top-level keys that train nothing


def checked_axis(config: ExperimentConfig, axis: Axis, keys: list[str]) -> Axis:
    """The axis with its key checked against the config: known, numeric, varied by a run."""
    flat = flatten(config.to_dict())
    section = axis.key.split(".")[0]
    if axis.key == "seed":
        raise ConfigError("seed is not an axis: --seeds sets the seeds of every point")
    if section in IGNORED_SECTIONS or axis.key in INERT:
        raise ConfigError(f"{axis.key}: no run varies with it (it does not change training)")
    if keys.count(axis.key) > 1:
        raise ConfigError(f"--x and --y both name {axis.key}")
    if axis.key not in flat:
        near = [k for k in flat if k.startswith(section + ".")] or sorted(flat)
        raise ConfigError(f"unknown key '{axis.key}'; valid: {', '.join(near)}")
    current = flat[axis.key]
    if isinstance(current, bool) or not isinstance(current, (int, float, type(None))):
        raise ConfigError(f"{axis.key} holds {current!r}, not a number")
    integer = isinstance(current, int)
    axis = replace(axis, integer=integer)
    base = config.to_dict()
    for value in (axis.lo, axis.hi):
        value = int(round(value)) if integer else value
        try:
            variant = build_config(apply_overrides(base, [(axis.key, value)]))
            if section in PAIRED:
                check_pairing(variant)
        except ConfigError as exc:
            raise ConfigError(f"{axis.key}={value!r}: {exc}") from None
    return axis
