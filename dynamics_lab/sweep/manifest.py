"""The sweep manifest (`sweep.json`): grid, run ids and their overrides, written before any run."""

from __future__ import annotations

from pathlib import Path

from dynamics_lab.config import ExperimentConfig
from dynamics_lab.sweep.grid import RunSpec
from dynamics_lab.tracking.rundir import RunDir, check_writable, now, read_json, write_json

MANIFEST = "sweep.json"


def prepare_sweep(config: ExperimentConfig, specs: list[RunSpec], sweep_dir: Path) -> list[Path]:
    """Create the sweep dir, its manifest and one pending run dir per spec."""
    check_writable(sweep_dir.parent)
    sweep_dir.mkdir(parents=True, exist_ok=False)
    write_json(sweep_dir / MANIFEST, {
        "experiment": config.name, "profile": config.profile, "sweep_id": sweep_dir.name,
        "created": now(), "grid": config.sweep.grid, "seeds": config.sweep.seeds,
        "runs": [{"run_id": s.run_id, "overrides": s.overrides} for s in specs],
    })
    dirs = []
    for spec in specs:
        RunDir.create(sweep_dir / spec.run_id, spec.config.to_dict(), spec.config.seed)
        dirs.append(sweep_dir / spec.run_id)
    return dirs


def read_manifest(sweep_dir: Path) -> dict:
    return read_json(Path(sweep_dir) / MANIFEST)
