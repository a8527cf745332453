"""The sweep manifest (`sweep.json`): grid, run ids and their overrides, written before any run.

Each run's status lives in its own meta.json; the manifest records the launches (launcher,
ensemble size, jobs and their scheduler ids), so a sweep can be inspected and finished later
with `--resume-sweep SWEEP_DIR`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dynamics_lab.config import ExperimentConfig
from dynamics_lab.sweep.grid import RunSpec
from dynamics_lab.tracking.rundir import (
    MANIFEST,
    RunDir,
    RunDirError,
    check_writable,
    now,
    read_manifest,
    safe_component,
    write_json,
)

IGNORED_SECTIONS = ("sweep", "logging")  # may change between launches of the same sweep


def prepare_sweep(config: ExperimentConfig, specs: list[RunSpec], sweep_dir: Path) -> list[Path]:
    """Create the sweep dir, its manifest and one pending run dir per spec."""
    for spec in specs:
        safe_component(spec.run_id, "run id")
    check_writable(sweep_dir.parent)
    try:
        sweep_dir.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise RunDirError(f"sweep dir '{sweep_dir}' already exists; to finish it, pass "
                          f"--resume-sweep {sweep_dir}") from None
    write_json(sweep_dir / MANIFEST, {
        "experiment": config.name, "profile": config.profile, "sweep_id": sweep_dir.name,
        "created": now(), "grid": config.sweep.grid, "seeds": config.sweep.seeds,
        "runs": [{"run_id": s.run_id, "overrides": s.overrides} for s in specs],
        "launches": [],
    })
    dirs = []
    for spec in specs:
        RunDir.create(sweep_dir / spec.run_id, spec.config.to_dict(), spec.config.seed)
        dirs.append(sweep_dir / spec.run_id)
    return dirs


def record_launch(sweep_dir: Path, launcher: str, jobs: list[list[Path]],
                  job_ids: list[Any] | None = None, **extra: Any) -> None:
    """Append one launch (its jobs, and their scheduler ids when there are any) to the manifest."""
    manifest = read_manifest(sweep_dir)
    ids = job_ids or [None] * len(jobs)
    manifest.setdefault("launches", []).append({
        "launcher": launcher, "at": now(), **extra,
        "jobs": [{"id": i, "runs": [Path(p).name for p in job]} for i, job in zip(ids, jobs)],
    })
    write_json(Path(sweep_dir) / MANIFEST, manifest)


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def first_difference(a: dict, b: dict) -> tuple[str, Any, Any] | None:
    """The first dotted key where two configs differ (sweep and logging sections ignored)."""
    fa, fb = _flat(a), _flat(b)
    for key in sorted(set(fa) | set(fb)):
        if key.split(".")[0] not in IGNORED_SECTIONS and fa.get(key) != fb.get(key):
            return key, fa.get(key), fb.get(key)
    return None


def reopen_sweep(config: ExperimentConfig, specs: list[RunSpec],
                 sweep_dir: Path) -> tuple[list[Path], dict[Path, str]]:
    """Check that `sweep_dir` holds exactly these runs with these configs; return the run dirs
    to go on with, and the unrecoverable ones (config.yaml lost or corrupted) with why.
    A lost run dir is prepared again; a lost meta.json is rebuilt from config.yaml."""
    from dynamics_lab.tracking.resume import recover_meta

    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / MANIFEST).is_file():
        raise RunDirError(f"'{sweep_dir}' is not a sweep directory (no {MANIFEST})")
    manifest = read_manifest(sweep_dir)
    if manifest.get("experiment") != config.name:
        raise RunDirError(f"'{sweep_dir}' is a sweep of '{manifest.get('experiment')}', "
                          f"not of '{config.name}'")
    listed = [entry["run_id"] for entry in manifest.get("runs", [])]
    if sorted(listed) != sorted(s.run_id for s in specs):
        raise RunDirError(f"'{sweep_dir}' holds other runs than this command makes "
                          f"({len(listed)} vs {len(specs)}); rerun with the original flags")
    check_writable(sweep_dir)
    dirs, lost, unrecoverable = [], [], {}
    for spec in specs:  # check everything before writing anything
        run = RunDir(sweep_dir / safe_component(spec.run_id, "run id"))
        if not run.path.exists():
            lost.append(spec)
        elif not run.config_path.is_file():
            unrecoverable[run.path] = f"{run.config_path.name} is missing"
            continue
        else:
            try:
                diff = first_difference(run.config(), spec.config.to_dict())
            except RunDirError as exc:
                unrecoverable[run.path] = str(exc)
                continue
            if diff:
                key, old, new = diff
                raise RunDirError(f"'{run.path}' was prepared with {key}={old!r}, this command "
                                  f"makes {key}={new!r}; rerun with the original flags or start "
                                  "a new sweep")
        dirs.append(run.path)
    for spec in lost:  # lost: prepare it again
        RunDir.create(sweep_dir / spec.run_id, spec.config.to_dict(), spec.config.seed)
    for path in dirs:
        recover_meta(RunDir(path), ours=True)
    return dirs, unrecoverable


def unfinished(run_dirs: list[Path], skip: frozenset[str] | set[str] = frozenset()) -> list[Path]:
    """Runs a launch should (re)start: not finished, not held by a live process, not in `skip`
    (run ids a scheduler still holds)."""
    from dynamics_lab.tracking.resume import still_running

    todo = []
    for path in run_dirs:
        run = RunDir.open(path)
        if not run.status.finished and not still_running(run) and path.name not in skip:
            todo.append(path)
    return todo
