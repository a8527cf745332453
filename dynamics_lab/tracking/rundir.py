"""Run directories: `runs/<experiment>/<sweep_id>/<run_id>/` with config, meta, metrics, verdict."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


class Status(str, Enum):
    """A run's state in meta.json; compares equal to its string, so JSON stays plain text."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    DIVERGED = "diverged"
    FAILED = "failed"
    KILLED = "killed"

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        """Training ended on its own terms: there is a verdict and nothing left to run."""
        return self in FINISHED

    @property
    def active(self) -> bool:
        """A process may still be working on the run (or is about to)."""
        return self in ACTIVE

    @property
    def resumable(self) -> bool:
        """Stopped before the end: continue from the last checkpoint when there is one."""
        return self in RESUMABLE


FINISHED = frozenset({Status.COMPLETED, Status.DIVERGED})
ACTIVE = frozenset({Status.PENDING, Status.RUNNING})
RESUMABLE = frozenset({Status.KILLED, Status.RUNNING, Status.FAILED})


class RunDirError(ValueError):
    """A run directory that is missing, foreign, corrupted or not writable."""


MAX_NAME = 200  # bytes; file systems allow 255 per path component


def safe_component(name: str, what: str) -> str:
    """`name` if it can be one directory name under the runs root: not empty, '.' or '..', no
    path separator or NUL, not too long. Else a one-line RunDirError naming `what` it is."""
    bad = None
    if not isinstance(name, str) or name in ("", ".", ".."):
        bad = "is empty, '.' or '..'"
    elif "/" in name or "\\" in name or (os.altsep and os.altsep in name):
        bad = "contains a path separator"
    elif "\0" in name:
        bad = "contains a NUL byte"
    elif len(name.encode()) > MAX_NAME:
        bad = f"is longer than {MAX_NAME} bytes"
    if bad:
        raise RunDirError(f"{what} {name!r} {bad}; it names a directory under the runs root")
    return name


def default_runs_root() -> Path:
    return Path(os.environ.get("DYNLAB_RUNS", "runs"))


def new_sweep_id(prefix: str = "") -> str:
    """Sortable and collision-free across concurrent sweeps: timestamp plus random suffix."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{prefix}{stamp}-{secrets.token_hex(2)}"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically, so readers never see half a file (nor a temp file left over)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict:
    """The JSON object in `path`; a RunDirError naming the file when it is missing, not UTF-8,
    not JSON, or JSON but not an object (`[]`, `null`)."""
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path} is missing") from None
    except UnicodeDecodeError as exc:
        raise RunDirError(f"{path} is corrupted: not UTF-8 (byte at offset {exc.start})") \
            from None
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path} is corrupted: {exc}") from None
    except OSError as exc:
        raise RunDirError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{path} is corrupted: a JSON {type(data).__name__}, not an object")
    return data


def config_hash(config: dict, without: tuple[str, ...] = ()) -> str:
    """A digest of a resolved config (dotted keys in `without` left out), so a run can tell
    that its config.yaml is the one it started with."""
    config = json.loads(json.dumps(config, default=str))
    for key in without:
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_writable(root: Path) -> None:
    """Fail early with a clear message if runs cannot be written under `root`."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{os.getpid()}-{secrets.token_hex(4)}"  # unique per caller
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise RunDirError(f"cannot write runs under '{root}': {exc.strerror or exc}") from None


def git_state() -> dict[str, Any]:
    """Commit and dirty flag of the checkout the package runs from (None outside git)."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                 timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def versions() -> dict[str, str]:
    import lightning
    import torch

    import dynamics_lab

    return {"python": platform.python_version(), "torch": torch.__version__,
            "lightning": lightning.__version__, "dynamics_lab": dynamics_lab.__version__}


MANIFEST = "sweep.json"  # a sweep directory's grid, run ids and launches (sweep/manifest.py)


def read_manifest(sweep_dir: Path | str) -> dict:
    """The manifest of a sweep directory (RunDirError when it is missing or corrupted)."""
    return read_json(Path(sweep_dir) / MANIFEST)


class RunDir:
    """One run's directory; every write is atomic or append-only."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.yaml")
    meta_path = property(lambda self: self.path / "meta.json")
    metrics_path = property(lambda self: self.path / "metrics.csv")
    parquet_path = property(lambda self: self.path / "metrics.parquet")  # written at the end
    progress_path = property(lambda self: self.path / "progress.json")  # while training
    verdict_path = property(lambda self: self.path / "verdict.json")
    checkpoint_dir = property(lambda self: self.path / "checkpoints")
    last_checkpoint = property(lambda self: self.checkpoint_dir / "last.ckpt")
    lock_path = property(lambda self: self.path / ".lock")

    @property
    def status(self) -> Status:
        return Status(self.meta.get("status"))

    def has_checkpoint(self) -> bool:
        return self.last_checkpoint.is_file()

    @classmethod
    def create(cls, path: Path, config: dict, seed: int) -> RunDir:
        """Make the directory with its resolved config and a `pending` meta.json."""
        run = cls(path)
        run.path.mkdir(parents=True, exist_ok=False)
        text = yaml.safe_dump(config, sort_keys=False)
        run.config_path.write_text(text)
        write_json(run.meta_path, {"status": Status.PENDING, "seed": seed, "created": now(),
                                   "config_hash": config_hash(yaml.safe_load(text))})
        return run

    @classmethod
    def open(cls, path: Path | str) -> RunDir:
        """An existing run directory, checked to be one of ours."""
        run = cls(path)
        if not run.path.is_dir():
            raise RunDirError(f"'{run.path}' is not a directory")
        if not run.config_path.is_file() or not run.meta_path.is_file():
            raise RunDirError(f"'{run.path}' is not a dynamics_lab run (no config.yaml/meta.json)")
        meta = run.meta
        if meta.get("status") not in set(Status):
            raise RunDirError(f"'{run.meta_path}' has an unknown status {meta.get('status')!r}")
        return run

    @property
    def meta(self) -> dict:
        return read_json(self.meta_path)

    def update_meta(self, **fields: Any) -> dict:
        meta = {**self.meta, **fields}
        write_json(self.meta_path, meta)
        return meta

    def config(self) -> dict:
        from dynamics_lab import strict_yaml

        if not self.config_path.is_file():
            raise RunDirError(f"{self.config_path} is missing")
        try:
            data = strict_yaml.read(self.config_path)
        except strict_yaml.YAMLInputError as exc:
            raise RunDirError(f"{self.config_path} is corrupted: "
                              f"{str(exc).removeprefix(f'{self.config_path}: ')}") from None
        if not isinstance(data, dict):
            raise RunDirError(f"{self.config_path} is not a config mapping")
        return data

    def start(self, device: str) -> None:
        for path in (self.parquet_path, self.progress_path):  # rewritten by this attempt
            path.unlink(missing_ok=True)
        from dynamics_lab.tracking.provenance import run_provenance  # user's repo, plugins

        meta = self.meta
        if meta.pop("error", None) is not None:  # the last attempt's; this one records its own
            write_json(self.meta_path, meta)
        self.update_meta(status=Status.RUNNING, started=now(), ended=None, argv=sys.argv,
                         host=platform.node(), pid=os.getpid(), device=device,
                         git=git_state(), versions=versions(), **run_provenance(self.config()),
                         _t0=time.time())

    def finish(self, status: Status, error: str | None = None) -> dict:
        """Record the ending; metrics.parquet is written first, so an ended run has it."""
        if self.metrics_path.exists():
            from dynamics_lab.tracking.metrics import write_parquet

            write_parquet(self.metrics_path, self.parquet_path)
        meta = self.meta
        wall = time.time() - meta.pop("_t0", time.time())
        meta.update(status=status, ended=now(),
                    wall_time_s=round(meta.get("wall_time_s", 0.0) + wall, 3))
        if error:
            meta["error"] = error
        write_json(self.meta_path, meta)
        return meta

    def reset(self) -> None:
        """Back to `pending` for a fresh start: the last attempt's metrics, verdict, checkpoints
        and W&B id go (a new attempt is a new W&B run); seed, creation time and attempts stay."""
        for path in (self.metrics_path, self.parquet_path, self.progress_path, self.verdict_path,
                     self.path / "error.log"):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        meta = self.meta
        kept = {k: meta[k] for k in ("seed", "created") if k in meta}
        write_json(self.meta_path, {**kept, "status": Status.PENDING,
                                    "attempts": meta.get("attempts", 1) + 1})

    def write_verdict(self, verdict: dict) -> None:
        write_json(self.verdict_path, verdict)

    def verdict(self) -> dict | None:
        return read_json(self.verdict_path) if self.verdict_path.exists() else None
