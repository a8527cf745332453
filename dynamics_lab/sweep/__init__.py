"""Sweeps: grid expansion, a manifest per sweep, and launchers (local, slurm, wandb)."""

from dynamics_lab.sweep.grid import RunSpec, expand, single
from dynamics_lab.sweep.manifest import prepare_sweep, read_manifest, reopen_sweep

__all__ = ["RunSpec", "expand", "prepare_sweep", "read_manifest", "reopen_sweep", "single"]
