"""Run a sweep's runs as subprocesses on this machine, `workers` at a time, one thread each."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

from dynamics_lab.tracking.rundir import RunDir


def run_subprocess(run_dir: Path) -> str:
    """Run one prepared run dir in a fresh interpreter; a crash there cannot take the sweep down."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "DYNLAB_THREADS": "1"}
    log = run_dir / "stdout.log"
    with open(log, "w") as out:
        proc = subprocess.run([sys.executable, "-m", "dynamics_lab.worker", str(run_dir)],
                              stdout=out, stderr=subprocess.STDOUT, env=env)
    run = RunDir(run_dir)
    status = run.meta.get("status")
    if status in ("pending", "running"):
        # The process died without recording an ending (signal, OOM): say so.
        reason = f"worker exited with code {proc.returncode} (see {log.name})"
        run.finish("killed" if proc.returncode < 0 else "failed", reason)
        status = run.meta["status"]
    return status


def launch_local(run_dirs: list[Path], workers: int,
                 on_done: Callable[[Path, str], None] = lambda p, s: None) -> dict[Path, str]:
    """Run every run dir; returns run dir -> final status. Failures never stop the others."""
    statuses = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(run_subprocess, d): d for d in run_dirs}
        for future in as_completed(futures):
            run_dir = futures[future]
            try:
                statuses[run_dir] = future.result()
            except Exception as exc:  # an unreadable run dir must not stop the sweep
                statuses[run_dir] = f"failed: {exc}"
            on_done(run_dir, statuses[run_dir])
    return statuses
