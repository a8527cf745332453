"""Ctrl-C, SIGTERM and SIGHUP while runs train (a scancel or a Slurm time limit sends SIGTERM, a
closed terminal SIGHUP): stop where a checkpoint can be written, or at once.

Lightning's own handling does not serve: its SIGTERM handler stops at the end of a step without a
checkpoint (`trainer.received_sigterm`, then SystemExit), Ctrl-C becomes `sys.exit(1)` after
`on_exception`, and SIGHUP is not handled."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

import lightning as L

from dynamics_lab.tracking.checkpoint import Interrupted


class StopRequest(L.Callback):
    """Ctrl-C and SIGTERM while runs train (a scancel or a Slurm time limit sends SIGTERM).

    A signal stops at once (Interrupted is raised where it lands), except while `deferring`: then
    the first one only sets `requested`, and StepCheckpoint stops training at the next step where
    a checkpoint can be written, after writing it; a second signal stops at once.
    """

    SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # SIGHUP: the terminal closed

    def __init__(self) -> None:
        self.requested: str | None = None  # the first signal's name
        self.deferring = False
        self._previous: dict = {}

    def __call__(self, signum: int, frame) -> None:
        first, name = self.requested is None, signal.Signals(signum).name
        self.requested = self.requested or name
        if not (self.deferring and first):
            raise Interrupted(name)

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name, None)
                if sig is None:  # no SIGHUP on Windows
                    continue
                self._previous.setdefault(sig, signal.getsignal(sig))
                signal.signal(sig, self)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning's fit adds its own SIGTERM handler, which exits at the end of a step without
        # a checkpoint; ours stops where one can be written.
        self.install()
