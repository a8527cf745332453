"""A run's live progress line on stderr and RUN_DIR/progress.json for sweeps.

`ProgressLine` is a Lightning callback. On a terminal it redraws one line in place (step / max,
key metrics, ETA); elsewhere (a log file, a sweep worker's stdout.log) it prints a plain line at
every tenth of the run or every 30 s, whichever comes first, and nothing for runs shorter than a
couple of seconds. Its per-step cost is one integer comparison: it looks at the clock only every
so many calls, a count re-estimated from the recent step rate (about four looks a second, and at
least one per 0.5% of the run; a call that ends a block of fused steps counts its steps).

Not Lightning's TQDM or Rich progress bar: both refresh a bar from every step's hooks, write
carriage returns or nothing into a log file, and keep no progress.json for a sweep to read.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from pathlib import Path
from typing import IO, Any

from lightning.pytorch.callbacks import Callback

from dynamics_lab.tracking.progress import eta_s, format_duration
from dynamics_lab.tracking.rundir import RunDir, write_json

KEYS = ("train/loss", "train/acc", "val/loss", "val/acc")  # shown when logged
FALLBACK = {"train/loss": "train/batch_loss"}  # shown until the first full evaluation


class ProgressLine(Callback):
    """Step / max, key metrics and ETA of the training run, on `stream` (default stderr).

    Args:
        run_dir: also keep RUN_DIR/progress.json up to date (what a sweep shows per run).
        stream: where the line goes; a terminal gets a line redrawn in place.
        redraw_s: seconds between redraws on a terminal.
        plain_every_s, plain_fraction: off a terminal, a line every this many seconds or this
            fraction of the run, whichever comes first.
        quiet_s: off a terminal, nothing before this many seconds (short runs stay silent).
        file_every_s: seconds between writes of progress.json.
    """

    def __init__(self, run_dir: Path | str | None = None, stream: IO[str] | None = None,
                 redraw_s: float = 0.5, plain_every_s: float = 30.0,
                 plain_fraction: float = 0.1, quiet_s: float = 2.0, file_every_s: float = 2.0):
        if not (0 < plain_fraction <= 1) or min(redraw_s, plain_every_s, file_every_s) <= 0:
            raise ValueError("ProgressLine: intervals must be positive, plain_fraction in (0, 1]")
        self.run = RunDir(run_dir) if run_dir is not None else None
        self.stream = stream
        self.redraw_s, self.plain_every_s = redraw_s, plain_every_s
        self.plain_fraction, self.quiet_s, self.file_every_s = plain_fraction, quiet_s, file_every_s
        self._calls = 0
        self._next_check = math.inf  # nothing happens before on_train_start

    def on_train_start(self, trainer, pl_module) -> None:
        self.out = self.stream or sys.stderr
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.max_steps = trainer.max_steps
        self.start_step = trainer.global_step  # a resumed run starts past 0
        self.t0 = time.monotonic()
        self._calls, self._checked = 0, (0, self.t0, self.start_step)
        self._next_check = 1
        self._max_gap = max(1, self.max_steps // 200)  # steps between looks at the clock
        self._last_line = self._last_file = -math.inf
        self._next_mark = self._mark_after(self.start_step)
        self._drawn = False  # on a terminal: a line is drawn and not yet ended
        self._printed_step: int | None = None  # off a terminal: the step of the last line

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._calls += 1
        if self._calls < self._next_check:  # the whole per-step cost
            return
        now, step = time.monotonic(), trainer.global_step
        calls, then, last_step = self._checked
        rate = (step - last_step) / max(now - then, 1e-9)  # steps/s since the last look
        per_call = max(1.0, (step - last_step) / max(self._calls - calls, 1))  # fused blocks
        gap = min(self._max_gap, max(1, int(rate * 0.25)))  # in steps
        self._checked = (self._calls, now, step)
        self._next_check = self._calls + max(1, int(gap / per_call))
        self._act(trainer, now)

    def on_train_end(self, trainer, pl_module) -> None:
        self._act(trainer, time.monotonic(), final=True)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._end_line()

    def _mark_after(self, step: int) -> int:
        """The next multiple of plain_fraction * max_steps after `step`."""
        every = max(1, math.ceil(self.plain_fraction * self.max_steps))
        return (step // every + 1) * every

    def _act(self, trainer, now: float, final: bool = False) -> None:
        step = trainer.global_step
        elapsed = now - self.t0
        left = eta_s(step, self.max_steps, self.start_step, elapsed)
        metrics = self.metrics(trainer)
        if self.run is not None and (final or now - self._last_file >= self.file_every_s):
            self._last_file = now
            self.write_file(step, left, metrics)
        line = self.format(step, metrics, left, elapsed)
        if self.tty:
            if final or now - self._last_line >= self.redraw_s:
                self._last_line = now
                width = shutil.get_terminal_size().columns - 1  # a wrapped line cannot be redrawn
                self.out.write(f"\r{line[:width]}\x1b[K")
                self.out.flush()
                self._drawn = True
            if final:
                self._end_line()
            return
        if elapsed < self.quiet_s or step == self._printed_step:
            return
        if step >= self._next_mark or now - self._last_line >= self.plain_every_s or (
                final and self._printed_step is not None):  # the last line of a long run
            self._next_mark = self._mark_after(step)
            self._last_line, self._printed_step = now, step
            self.out.write(line + "\n")
            self.out.flush()

    def _end_line(self) -> None:
        if getattr(self, "tty", False) and self._drawn:
            self.out.write("\n")
            self.out.flush()
        self._drawn = False

    @staticmethod
    def metrics(trainer) -> dict[str, float]:
        """The latest value of each key metric: from the run's metrics logger (`latest`), else
        what Lightning's own logging holds (`callback_metrics`)."""
        values: dict[str, Any] = {k: v for k, v in trainer.callback_metrics.items()}
        for logger in trainer.loggers:
            values.update(getattr(logger, "latest", None) or {})
        shown = {}
        for key in KEYS:
            name = key if key in values else FALLBACK.get(key)
            if name in values:
                shown[name] = float(values[name])
        return shown

    def format(self, step: int, metrics: dict[str, float], left: float | None,
               elapsed: float) -> str:
        width = len(str(self.max_steps))
        percent = 100 * step / self.max_steps if self.max_steps else 100.0
        parts = [f"step {step:>{width}}/{self.max_steps} ({percent:3.0f}%)"]
        parts += [f"{k}={v:.4g}" for k, v in metrics.items()]
        parts.append(f"{format_duration(elapsed)} elapsed, eta {format_duration(left)}")
        return "  ".join(parts)

    def write_file(self, step: int, left: float | None, metrics: dict[str, float]) -> None:
        write_json(self.run.progress_path, {
            "step": step, "max_steps": self.max_steps, "eta_s": left,
            "metrics": {k: v for k, v in metrics.items() if math.isfinite(v)},
            "time": time.time()})
