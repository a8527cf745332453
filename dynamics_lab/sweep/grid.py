"""Expand an experiment's `sweep:` grid (times seeds) into concrete run configs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from dynamics_lab.config import ExperimentConfig, apply_overrides, build_config
from dynamics_lab.tracking.rundir import RunDirError, safe_component


@dataclass
class RunSpec:
    """One point of a sweep: its id, the values it sets, and its resolved config."""

    run_id: str
    overrides: dict[str, Any]
    config: ExperimentConfig = field(repr=False)


def _label(key: str, value: Any) -> str:
    return f"{key.rsplit('.', 1)[-1]}={value}"


def run_id_for(overrides: dict[str, Any]) -> str:
    """Readable and unique within a sweep: 'weight_decay=1.0,train_fraction=0.4,seed=0'. It
    names a directory, so a value that cannot (a '/', say) is a one-line RunDirError."""
    run_id = ",".join(_label(k, v) for k, v in overrides.items()) or "run"
    return safe_component(run_id, "run id")


def expand(config: ExperimentConfig) -> list[RunSpec]:
    """Cartesian product of the grid, crossed with the seeds; grid order is kept."""
    base = config.to_dict()
    keys = list(config.sweep.grid)
    specs = []
    for values in itertools.product(*(config.sweep.grid[k] for k in keys)):
        for seed in config.sweep.seeds:
            overrides = {**dict(zip(keys, values)), "seed": seed}
            resolved = build_config(apply_overrides(base, list(overrides.items())))
            specs.append(RunSpec(run_id_for(overrides), overrides, resolved))
    ids = [s.run_id for s in specs]
    twice = next((i for i in ids if ids.count(i) > 1), None)
    if twice:
        raise RunDirError(f"two runs of the grid would share the directory {twice!r}; give the "
                          "grid values that differ in more than their type")
    return specs


def single(config: ExperimentConfig) -> RunSpec:
    """The one run of a non-sweep invocation."""
    return RunSpec(run_id_for({"seed": config.seed}), {"seed": config.seed}, config)
