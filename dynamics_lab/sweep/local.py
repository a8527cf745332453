"""Run a sweep's jobs as subprocesses on this machine, `workers` at a time, one thread each.

With several GPUs visible, each worker slot gets its own GPU (round-robin over the slots via
CUDA_VISIBLE_DEVICES), so `--workers` defaults to one run per GPU.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from dynamics_lab.tracking.rundir import RunDir

Job = list[Path]  # one run, or the members of one ensemble


def visible_gpus() -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES when set, else every CUDA device."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def default_workers(gpus: list[str]) -> int:
    """One run per GPU when several are visible; otherwise one at a time."""
    return len(gpus) if len(gpus) > 1 else 1


def slot_env(slot: int, gpus: list[str]) -> dict[str, str]:
    """Environment of one worker slot: one torch thread, and its own GPU when there are several."""
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "DYNLAB_THREADS": "1"}
    if len(gpus) > 1:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    return env


def run_subprocess(job: Job, env: dict[str, str] | None = None) -> dict[Path, str]:
    """Run one job in a fresh interpreter; a crash there cannot take the sweep down."""
    log = job[0] / "stdout.log"
    with open(log, "a") as out:
        proc = subprocess.run([sys.executable, "-m", "dynamics_lab.worker", *map(str, job)],
                              stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, **(env or {})})
    statuses = {}
    for run_dir in job:
        run = RunDir(run_dir)
        status = run.meta.get("status")
        if status in ("pending", "running"):
            # The process died without recording an ending (signal, OOM): say so.
            reason = f"worker exited with code {proc.returncode} (see {log})"
            run.finish("killed" if proc.returncode < 0 else "failed", reason)
            status = run.meta["status"]
        statuses[run_dir] = status
    return statuses


def launch_local(jobs: list[Job], workers: int | None = None,
                 on_done: Callable[[Path, str], None] = lambda p, s: None,
                 gpus: list[str] | None = None,
                 run: Callable[..., dict[Path, str]] = run_subprocess) -> dict[Path, str]:
    """Run every job; returns run dir -> final status. Failures never stop the others."""
    gpus = visible_gpus() if gpus is None else gpus
    workers = workers or default_workers(gpus)
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(workers):
        slots.put(slot)

    def in_slot(job: Job) -> dict[Path, str]:
        slot = slots.get()
        try:
            return run(job, slot_env(slot, gpus))
        finally:
            slots.put(slot)

    statuses: dict[Path, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(in_slot, job): job for job in jobs}
        for future in as_completed(futures):
            try:
                finished = future.result()
            except Exception as exc:  # an unreadable run dir must not stop the sweep
                finished = {d: f"failed: {exc}" for d in futures[future]}
            for run_dir, status in finished.items():
                statuses[run_dir] = status
                on_done(run_dir, status)
    return statuses


def launch_with_progress(sweep_dir: Path, jobs: list[Job], workers: int | None) -> dict:
    """`launch_local` with a progress bar and a line per finished run, recorded in the manifest."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from dynamics_lab.sweep.manifest import record_launch

    gpus = visible_gpus()
    workers = workers or default_workers(gpus)
    record_launch(sweep_dir, "local", jobs, workers=workers, gpus=gpus)
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn()) as progress:
        bar = progress.add_task(f"sweep ({workers} worker(s))", total=sum(map(len, jobs)))

        def on_done(run_dir: Path, status: str) -> None:
            verdict = RunDir(run_dir).verdict() or {}
            progress.console.print(f"  {run_dir.name}: {status}  {verdict.get('summary', '')}")
            progress.advance(bar)

        return launch_local(jobs, workers, on_done, gpus)
