"""What a local sweep shows while it runs: runs done of all, steps done of all with an ETA, and a
row per running run with its step (from the run's progress.json, or its metrics.csv's last row
for runs that write none), refreshed once a second; a line per run as it ends."""

from __future__ import annotations

import threading
from pathlib import Path

from dynamics_lab.tracking.progress import read_progress
from dynamics_lab.tracking.rundir import RunDir, RunDirError, Status

POLL_S = 1.0  # how often running runs' steps are read


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

    def __init__(self, jobs: list[list[Path]], workers: int):
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
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("steps"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
        total = sum(m or 0 for m in self.max_steps.values()) or None
        self.sweep = self.progress.add_task(self._title(), total=total)

    def _title(self) -> str:
        return f"sweep: {len(self.ended)}/{len(self.runs)} runs ({self.workers} worker(s))"

    def __enter__(self) -> SweepProgress:
        self.progress.start()
        self.poller = threading.Thread(target=self._poll, daemon=True)
        self.poller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.poller.join()
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
            self.progress.console.print(ending_line(run_dir, status))
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
