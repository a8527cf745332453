"""Where a run came from, beyond dynamics_lab itself: the user's repository (commit and dirty
flag of the directory the command ran in), every installed distribution's version, each
plugin's content hash, and the user's command line (kept in sweep.json).

Recorded because a result is reproduced from the user's code and environment, not only from
the package's: a plugin edited after a sweep, or a different numpy, changes the numbers."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from dynamics_lab.tracking.rundir import MANIFEST, RunDirError, now, read_json, write_json


def repo_state(where: Path | str) -> dict[str, Any] | None:
    """{root, commit, dirty} of the git repository holding `where`; None outside one (or
    without git). Dirty counts changes to tracked files."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(where), *args], capture_output=True,
                                 text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"root": git("rev-parse", "--show-toplevel"), "commit": commit,
            "dirty": bool(status) if status is not None else None}


def distributions() -> dict[str, str]:
    """Every installed distribution's version, by name (sorted)."""
    return dict(_distributions())


@functools.cache
def _distributions() -> dict[str, str]:
    # Read once per process: parsing every METADATA file costs ~0.3 s, and an ensemble's
    # members (or a worker's runs) start in the same unchanged environment.
    from importlib.metadata import distributions as installed

    found = {}
    for dist in installed():
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            found.setdefault(name, dist.version)
    return dict(sorted(found.items(), key=lambda item: item[0].lower()))


def _source_files(plugin: str, base: Path) -> list[Path]:
    """The files a plugin's code lives in: the .py file, or the module's file (every .py file
    of a package)."""
    if plugin.endswith(".py"):
        path = Path(plugin) if Path(plugin).is_absolute() else base / plugin
        return [path.resolve()] if path.is_file() else []
    try:
        spec = importlib.util.find_spec(plugin)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        return []
    origin = Path(spec.origin)
    return sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]


def plugin_hashes(plugins: list[str], base: Path | str = ".") -> dict[str, dict[str, Any]]:
    """Per plugin (module name or .py path, relative ones against `base`): its files and one
    sha256 over their contents (in path order); `sha256: None` when it cannot be found."""
    hashes = {}
    for plugin in plugins:
        files = _source_files(plugin, Path(base))
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        hashes[plugin] = {"files": [str(p) for p in files],
                          "sha256": digest.hexdigest() if files else None}
    return hashes


def run_provenance(config: dict, cwd: Path | str | None = None) -> dict[str, Any]:
    """The meta.json fields of a starting run: `user_git` (the repository of the working
    directory), `distributions`, `plugins` (content hashes)."""
    cwd = Path(cwd or os.getcwd())
    plugins = [p for p in (config.get("plugins") or []) if isinstance(p, str)]
    return {"user_git": repo_state(cwd), "distributions": distributions(),
            "plugins": plugin_hashes(plugins, cwd)}


def record_command(sweep_dir: Path, argv: list[str] | None = None,
                   cwd: Path | str | None = None) -> dict:
    """Append the user's command line (argv, working directory, its repository, time) to the
    sweep's manifest under `commands`: the first entry made the sweep, later ones resumed it."""
    manifest_path = Path(sweep_dir) / MANIFEST
    manifest = read_json(manifest_path)
    if not isinstance(manifest, dict):
        raise RunDirError(f"{manifest_path} is not a sweep manifest")
    cwd = Path(cwd or os.getcwd())
    entry = {"argv": list(sys.argv if argv is None else argv), "cwd": str(cwd),
             "user_git": repo_state(cwd), "at": now()}
    manifest.setdefault("commands", []).append(entry)
    write_json(manifest_path, manifest)
    return entry
