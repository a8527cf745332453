"""Sweeps: grid expansion, a manifest per sweep, and launchers."""

from dynamics_lab.sweep.grid import RunSpec, expand, single
from dynamics_lab.sweep.manifest import prepare_sweep, read_manifest

__all__ = ["RunSpec", "expand", "prepare_sweep", "read_manifest", "single"]
