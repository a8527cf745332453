"""What a local sweep shows while it runs: runs done of all, steps done of all with an ETA, and a
row per running run with its step (from the run's progress.json, or its metrics.csv's last row
for runs that write none), refreshed once a second; a line per run as it ends.

Off a terminal (a log file, Slurm, nohup) nothing is redrawn: a plain heartbeat line (runs done,
steps, ETA) is printed every 30 s or at every tenth of the sweep's steps, whichever comes first.
Lines are never hard-wrapped, so a log keeps one line per event."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

from dynamics_lab.tracking.progress import format_duration, read_progress
from dynamics_lab.tracking.rundir import RunDir, RunDirError, Status

POLL_S = 1.0  # how often running runs' steps are read
HEARTBEAT_S = 30.0  # off a terminal: a line at least this often
HEARTBEAT_FRACTION = 0.1  # ... and at every this fraction of the sweep's steps


def max_steps(run_dir: Path) -> int | None:
    """trainer.max_steps of a prepared run (None when its config cannot be read)."""
    try:
        return int(RunDir(run_dir).config()["trainer"]["max_steps"])
    except (RunDirError, KeyError, TypeError, ValueError):
        return None


def ending_line(run_dir: Path, status: Status) -> str:
    """`run_id: status  verdict summary (or the error)`."""
    try:
        run = RunDir(run_dir)
        line = (run.verdict() or {}).get("summary") or run.meta.get("error") or ""
    except RunDirError as exc:
        line = str(exc)
    return f"  {run_dir.name}: {status}  {line}"


class SweepProgress:
    """`with SweepProgress(jobs, workers) as p:` around `launch_local(..., p.done,
    on_start=p.started)`; a rich display on the console."""

    def __init__(self, jobs: list[list[Path]], workers: int, console=None):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.runs = [run_dir for job in jobs for run_dir in job]
        self.max_steps = {run_dir: max_steps(run_dir) for run_dir in self.runs}
        self.workers = workers
        self.ended: set[Path] = set()
        self.rows: dict[Path, int] = {}  # running run -> its task in the display
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.console = console or Console(soft_wrap=True)  # soft: no hard wraps in logs
        self.live = self.console.is_terminal
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("steps"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=self.console)
        self.total = sum(m or 0 for m in self.max_steps.values()) or None
        self.sweep = self.progress.add_task(self._title(), total=self.total)
        self.t0 = time.monotonic()
        self._last_beat, self._next_mark = self.t0, HEARTBEAT_FRACTION

    def _title(self) -> str:
        return f"sweep: {len(self.ended)}/{len(self.runs)} runs ({self.workers} worker(s))"

    def __enter__(self) -> SweepProgress:
        self.t0 = self._last_beat = time.monotonic()
        if self.live:
            self.progress.start()
        self.poller = threading.Thread(target=self._poll, daemon=True)
        self.poller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.poller.join()
        if self.live:
            self.progress.stop()

    def started(self, job: list[Path]) -> None:
        with self.lock:
            for run_dir in job:
                if run_dir not in self.ended and run_dir not in self.rows:
                    self.rows[run_dir] = self.progress.add_task(
                        f"  {run_dir.name}", total=self.max_steps.get(run_dir))

    def done(self, run_dir: Path, status: Status) -> None:
        with self.lock:
            self.ended.add(run_dir)
            row = self.rows.pop(run_dir, None)
            if row is not None:
                self.progress.remove_task(row)
            self.console.print(ending_line(run_dir, status), markup=False, highlight=False,
                               soft_wrap=True)
            self._refresh()

    def _refresh(self) -> None:
        done = sum(self.max_steps.get(run_dir) or 0 for run_dir in self.ended)  # all its steps
        for run_dir, row in self.rows.items():
            step, total = read_progress(run_dir, self.max_steps.get(run_dir))
            self.progress.update(row, completed=step, total=total)
            done += step
        self.progress.update(self.sweep, completed=done, description=self._title())

    def _poll(self) -> None:
        while not self.stopped.wait(POLL_S):
            with self.lock:
                self._refresh()
                if not self.live:
                    self.heartbeat(time.monotonic())

    def heartbeat(self, now: float) -> str | None:
        """Off a terminal: print (and return) the heartbeat line when HEARTBEAT_S passed since
        the last one or the sweep crossed its next tenth of the steps; else None."""
        done = self.progress.tasks[self.sweep].completed
        fraction = done / self.total if self.total else 0.0
        if now - self._last_beat < HEARTBEAT_S and fraction < self._next_mark:
            return None
        self._last_beat = now
        self._next_mark = (math.floor(fraction / HEARTBEAT_FRACTION) + 1) * HEARTBEAT_FRACTION
        elapsed = now - self.t0
        left = elapsed * (1 - fraction) / fraction if fraction > 0 else None
        steps = f"{done:.0f}/{self.total} steps ({fraction:.0%})" if self.total else "steps ?"
        line = (f"sweep: {len(self.ended)}/{len(self.runs)} runs done, {len(self.rows)} running, "
                f"{steps}, {format_duration(elapsed)} elapsed, eta {format_duration(left)}")
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        return line
