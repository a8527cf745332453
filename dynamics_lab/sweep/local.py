"""Run a sweep's jobs as subprocesses on this machine, `workers` at a time, one thread each.

With several GPUs visible, each worker slot gets its own GPU (round-robin over the slots via
CUDA_VISIBLE_DEVICES), so `--workers` defaults to one run per GPU. Each worker runs in its own
process group: Ctrl-C at the terminal reaches this process alone, which then stops the workers
(SIGTERM: each checkpoints and records `killed`), launches nothing more, and re-raises.

Workers run the installed dynamics_lab, never a `dynamics_lab/` folder in the current directory
(a checkout, an old copy): the interpreter starts with `-P` and PYTHONSAFEPATH=1, which keep the
current directory off `sys.path` (Python 3.11+; older ones drop it in a one-line bootstrap).

The pool is concurrent.futures; not submitit's LocalExecutor, which starts every submitted job
at once (no worker limit, no GPU per slot) under a time limit, with its state in its own folder.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from dynamics_lab.tracking.rundir import RunDir, RunDirError, Status

Job = list[Path]  # one run, or the members of one ensemble
STOP_GRACE_S = 60.0  # how long stopped workers get to checkpoint before SIGKILL
WORKER = "dynamics_lab.train.worker"
SAFE_PATH = {"PYTHONSAFEPATH": "1"}  # no current directory on the worker's sys.path


def worker_command(job: Job) -> list[str]:
    """The command that runs one job with the installed package, wherever it is started."""
    if sys.version_info >= (3, 11):
        return [sys.executable, "-P", "-m", WORKER, *map(str, job)]
    bootstrap = ("import runpy, sys; del sys.path[0]; "
                 f"runpy.run_module({WORKER!r}, run_name='__main__', alter_sys=True)")
    return [sys.executable, "-c", bootstrap, *map(str, job)]


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


def record_ending(job: Job, returncode: int, log: Path) -> dict[Path, Status]:
    """Each run's status after its worker exited; a run the worker left `running` or `pending`
    (killed by a signal, out of memory) says so, unless another live process holds it."""
    from dynamics_lab.tracking.resume import still_running

    statuses = {}
    for run_dir in job:
        run = RunDir(run_dir)
        try:
            if run.status.active and not still_running(run):
                reason = f"worker exited with code {returncode} (see {log})"
                run.finish(Status.KILLED if returncode < 0 else Status.FAILED, reason)
            statuses[run_dir] = run.status
        except RunDirError:  # meta.json lost and not recoverable by the worker
            statuses[run_dir] = Status.FAILED
    return statuses


class Workers:
    """The worker processes of one launch; `stop()` signals them all and admits no new one."""

    def __init__(self) -> None:
        self.procs: set[subprocess.Popen] = set()
        self.stopping = threading.Event()
        self._lock = threading.Lock()

    def run(self, job: Job, env: dict[str, str] | None = None) -> dict[Path, Status]:
        """Run one job in a fresh interpreter; a crash there cannot take the sweep down."""
        log = job[0] / "stdout.log"
        with self._lock:
            if self.stopping.is_set():
                return {}
            with open(log, "a") as out:
                proc = subprocess.Popen(
                    worker_command(job), stdout=out, stderr=subprocess.STDOUT,
                    env={**os.environ, **SAFE_PATH, **(env or {})}, start_new_session=True)
            self.procs.add(proc)
        try:
            proc.wait()
        finally:
            with self._lock:
                self.procs.discard(proc)
        return record_ending(job, proc.returncode, log)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.stopping.set()
        with self._lock:
            for proc in self.procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (or SIGHUP: the terminal closed) to the launching process stops the sweep the way
    Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signals = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]
    previous = {sig: signal.signal(sig, interrupt) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def launch_local(jobs: list[Job], workers: int | None = None,
                 on_done: Callable[[Path, Status], None] = lambda p, s: None,
                 gpus: list[str] | None = None,
                 run: Callable[..., dict[Path, Status]] | None = None,
                 on_start: Callable[[Job], None] = lambda job: None) -> dict[Path, Status]:
    """Run every job; returns run dir -> final status. Failures never stop the others; Ctrl-C
    stops the running workers (their runs end `killed`) and is re-raised. `on_start(job)` is
    called as a job gets its worker slot, `on_done(run_dir, status)` as each run ends."""
    gpus = visible_gpus() if gpus is None else gpus
    workers = workers or default_workers(gpus)
    procs = Workers()
    run = run or procs.run
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(workers):
        slots.put(slot)

    def in_slot(job: Job) -> dict[Path, Status]:
        slot = slots.get()
        try:
            if procs.stopping.is_set():
                return {}
            on_start(job)
            return run(job, slot_env(slot, gpus))
        finally:
            slots.put(slot)

    statuses: dict[Path, Status] = {}

    def collect(done) -> None:
        for future in done:
            try:
                finished = future.result()
            except Exception:  # an unreadable run dir must not stop the sweep
                finished = {d: Status.FAILED for d in futures[future]}
            for run_dir, status in finished.items():
                statuses[run_dir] = status
                on_done(run_dir, status)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, sigterm_as_interrupt():
        futures = {pool.submit(in_slot, job): job for job in jobs}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                collect(done)
        except KeyboardInterrupt:
            procs.stop(signal.SIGTERM)
            for future in pending:
                future.cancel()
            with contextlib.suppress(KeyboardInterrupt):  # asked twice: stop now
                wait(pending, timeout=STOP_GRACE_S)
            procs.stop(signal.SIGKILL)
            done, _ = wait(pending)
            collect(f for f in done if not f.cancelled())
            raise
    return statuses


def launch_with_progress(sweep_dir: Path, jobs: list[Job], workers: int | None) -> dict:
    """`launch_local` showing the sweep's progress (ETA, each running run's step) and a line per
    finished run, recorded in the manifest."""
    from dynamics_lab.sweep.manifest import record_launch
    from dynamics_lab.sweep.progress import SweepProgress

    gpus = visible_gpus()
    workers = workers or default_workers(gpus)
    record_launch(sweep_dir, "local", jobs, workers=workers, gpus=gpus)
    with SweepProgress(jobs, workers) as progress:
        return launch_local(jobs, workers, progress.done, gpus, on_start=progress.started)
