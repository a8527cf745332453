"""The run a W&B agent's parameters name: found in the sweep dir, or made there, and how its ending
reads to the agent.

A grid sweep's runs are prepared before any agent starts; a random or Bayes search samples
values off any grid, so an agent call with parameters no run has makes one: its values checked
by the config's schema (a refused value makes a `failed` run whose error is that line), named
like a grid run (`lr=0.0123,seed=0`) and added to `sweep.json` with the values sampled so far
as its grid, as `dynlab phase` adds its rounds, so `load_sweep` and `dynlab report` read it like
any sweep. Agents on several machines add runs at once: the manifest is rewritten under a lock.

A W&B sweep stops a run (hyperband's early termination, or a stopped agent) with SIGTERM: the
run ends `killed` (the interrupted status: resumable, not failed) with that cause in its error,
and the call exits 0, since W&B counts a non-zero exit as a failed run and stops an agent
after a few of them.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dynamics_lab.config import ExperimentConfig, apply_overrides
from dynamics_lab.schema import ConfigError
from dynamics_lab.sweep.grid import expand, run_id_for
from dynamics_lab.sweep.manifest import prepare_sweep
from dynamics_lab.sweep.wandb_sweep import config_for, prepared, search_parameters
from dynamics_lab.tracking.rundir import (
    MANIFEST,
    RunDir,
    RunDirError,
    Status,
    read_manifest,
    safe_component,
    write_json,
)

LOCK = ".sweep.json.lock"  # beside the manifest: one writer at a time
SEARCH = "search"  # the manifest's section for a random or Bayes search
STOPPED = "stopped by the W&B sweep (early termination) or its agent"


@contextlib.contextmanager
def manifest_lock(sweep_dir: Path) -> Iterator[None]:
    """Hold the sweep's manifest lock (flock: released when the process dies)."""
    with open(Path(sweep_dir) / LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def search_keys(config: ExperimentConfig) -> list[str]:
    """The keys a search sets besides the seed: the grid's, then the W&B ranges'."""
    return list(dict.fromkeys([*config.sweep.grid, *search_parameters(config)]))


def record_search(sweep_dir: Path, config: ExperimentConfig) -> None:
    """Mark the sweep dir as a random or Bayes search: its method, and its keys as the grid
    (their values filled in as runs are made)."""
    with manifest_lock(sweep_dir):
        manifest = read_manifest(sweep_dir)
        manifest[SEARCH] = {"method": config.sweep.wandb.method,
                            "parameters": search_parameters(config)}
        manifest["grid"] = {k: [] for k in search_keys(config)}  # no run yet
        write_json(Path(sweep_dir) / MANIFEST, manifest)


def _sorted(values: set) -> list:
    try:
        return sorted(values)
    except TypeError:  # mixed types: a stable order all the same
        return sorted(values, key=str)


def register(sweep_dir: Path, run_id: str, overrides: dict[str, Any]) -> None:
    """Add a run to the manifest; its grid becomes the values the runs hold."""
    with manifest_lock(sweep_dir):
        manifest = read_manifest(sweep_dir)
        runs = manifest.setdefault("runs", [])
        if run_id not in {r["run_id"] for r in runs}:
            runs.append({"run_id": run_id, "overrides": overrides})
        keys = [*manifest.get("grid", {}), *(k for k in overrides if k != "seed")]
        grid: dict[str, set] = {k: set() for k in dict.fromkeys(keys)}
        for entry in runs:
            for key, value in entry["overrides"].items():
                if key in grid:
                    grid[key].add(value)
        manifest["grid"] = {k: _sorted(v) for k, v in grid.items()}
        manifest["seeds"] = _sorted({r["overrides"].get("seed") for r in runs} - {None})
        write_json(Path(sweep_dir) / MANIFEST, manifest)


def _resolved(tree: dict, key: str, default: Any) -> Any:
    """The value at a dotted key of a resolved config (the schema's type: 1 -> 1.0)."""
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _ordered(config: ExperimentConfig, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters in the sweep's key order, the seed last (as grid run ids are)."""
    keys = [k for k in search_keys(config) if k in params]
    keys += [k for k in params if k not in keys and k != "seed"]
    return {k: params[k] for k in [*keys, *(["seed"] if "seed" in params else [])]}


def _make(sweep_dir: Path, run_id: str, config: dict, seed: Any) -> Path:
    path = Path(sweep_dir) / safe_component(run_id, "run id")
    with contextlib.suppress(FileExistsError):  # another agent sampled the same values
        RunDir.create(path, config, seed if isinstance(seed, int) else 0)
    return path


def make_run(config: ExperimentConfig, sweep_dir: Path,
             params: dict[str, Any]) -> tuple[Path, str | None]:
    """The run dir for parameters no listed run has, made and registered; with the error line
    when the schema refuses them (the run is then `failed` with that error)."""
    params = _ordered(config, params)
    try:
        resolved = config_for(config, params)
    except ConfigError as exc:
        error = f"W&B parameters refused: {exc}"
        raw = apply_overrides(config.to_dict(), list(params.items()))
        path = _make(sweep_dir, run_id_for(params), raw, params.get("seed"))
        run = RunDir(path)
        if not run.status.finished:
            run.finish(Status.FAILED, error)
        register(sweep_dir, path.name, params)
        return path, error
    tree = resolved.to_dict()
    overrides = {k: _resolved(tree, k, v) for k, v in params.items()}
    path = _make(sweep_dir, run_id_for(overrides), tree, resolved.seed)
    register(sweep_dir, path.name, overrides)
    return path, None


def find_run(config: ExperimentConfig, sweep_dir: Path, params: dict[str, Any],
             wait_s: float = 30.0) -> tuple[Path, str | None]:
    """The run dir whose overrides equal `params`, else a new one (`make_run`); prepares the
    sweep dir when this machine lacks it. The error line is set when the values are refused."""
    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / MANIFEST).exists():
        try:
            prepare_sweep(config, prepared(config, expand(config)), sweep_dir)
            if config.sweep.wandb.method != "grid":
                record_search(sweep_dir, config)
        except RunDirError:
            pass  # another agent is preparing it right now
    deadline = time.time() + wait_s
    while True:
        try:
            entries = read_manifest(sweep_dir)["runs"]
            break
        except RunDirError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    for entry in entries:
        if entry["overrides"] == params:
            path = sweep_dir / safe_component(entry["run_id"], "run id")
            while not (path / "meta.json").exists() and time.time() < deadline:
                time.sleep(0.5)
            run = RunDir(path)
            error = run.meta.get("error") if run.status == Status.FAILED else None
            return path, error if error and error.startswith("W&B parameters refused") else None
    return make_run(config, sweep_dir, params)


def exit_code(run_dir: Path, status: Status) -> int:
    """What `agent-run` exits with: 0 for a finished run and for one the sweep stopped (its
    error says so; it stays `killed`), 1 otherwise."""
    if status == Status.KILLED:
        run = RunDir(run_dir)
        cause = run.meta.get("error") or "interrupted"
        if not str(cause).startswith(STOPPED):
            run.update_meta(error=f"{STOPPED}: {cause}")
        return 0
    return 0 if status.finished else 1
