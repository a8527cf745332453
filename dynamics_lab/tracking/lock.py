"""One process at a time per run directory: a lock file created with O_CREAT|O_EXCL.

The file holds the holder's pid and host. A lock whose holder is gone is stale and taken over:
on this host, when that pid is no longer alive; from another host (where the pid cannot be
checked), when its holder stopped refreshing it for LEASE_S seconds.

Not filelock: its flock locks fail on cluster filesystems mounted without flock, and its marker
locks take over a dead holder on another host only by age; this one takes over a dead pid's lock at
once, a silent host's after its lease, and says who holds it.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from pathlib import Path

from dynamics_lab.tracking.rundir import RunDir, RunDirError

LEASE_S = 600.0  # a holder on another host refreshes its lock every LEASE_S / 10 seconds


class LockedError(RunDirError):
    """The run directory is being worked on by another live process."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def holder(run_dir: Path | str) -> dict | None:
    """Who holds the run's lock ({pid, host, since}), or None when it is free or stale."""
    path = RunDir(run_dir).lock_path
    try:
        data = json.loads(path.read_text())
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    except (OSError, ValueError):  # being written right now, or garbage once its writer died
        return {"pid": None, "host": None} if _fresh(path) else None
    if not isinstance(data, dict):
        return None
    if data.get("host") == platform.node():
        return data if isinstance(data.get("pid"), int) and pid_alive(data["pid"]) else None
    return data if age < LEASE_S else None


def _fresh(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime < 10.0
    except OSError:
        return False


class RunLock:
    """`with RunLock(run_dir):` this process alone works on the run; LockedError (one line)
    otherwise. Released on every way out of the block."""

    def __init__(self, run_dir: Path | str):
        self.path = RunDir(run_dir).lock_path
        self._stop = threading.Event()
        self._mine = ""

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        self._mine = json.dumps({"pid": os.getpid(), "host": platform.node(),
                                 "since": time.strftime("%Y-%m-%dT%H:%M:%S")})
        for _ in range(3):
            if self.path.is_dir():  # not ours to remove: someone put it there
                raise RunDirError(f"'{self.path}' is a directory, not a lock file; remove it "
                                  "if no process is working on the run")
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                held = holder(self.path.parent)
                if held is not None:
                    raise LockedError(self._busy(held)) from None
                try:
                    self.path.unlink(missing_ok=True)  # stale: its holder is gone
                except OSError as exc:
                    raise RunDirError(f"cannot take over the stale lock '{self.path}': "
                                      f"{exc.strerror or exc}") from None
                continue
            except OSError as exc:
                raise RunDirError(f"cannot lock '{self.path.parent}': "
                                  f"{exc.strerror or exc}") from None
            with os.fdopen(fd, "w") as f:
                f.write(self._mine)
            self._heartbeat()
            return
        raise LockedError(f"'{self.path.parent}' is being locked by another process; try again")

    def _busy(self, held: dict) -> str:
        who = f"pid {held.get('pid')} on {held.get('host')}" if held.get("pid") else "a process"
        since = f" since {held['since']}" if held.get("since") else ""
        return (f"'{self.path.parent}' is in use by {who}{since}; if no such process is working "
                f"on it, delete {self.path}")

    def _heartbeat(self) -> None:
        # Refreshing the lock's mtime is what tells other hosts the holder is still alive.
        def beat() -> None:
            while not self._stop.wait(LEASE_S / 10):
                try:
                    os.utime(self.path)
                except OSError:
                    return

        self._stop.clear()
        threading.Thread(target=beat, daemon=True, name="dynlab-lock").start()

    def release(self) -> None:
        self._stop.set()
        try:
            if self.path.read_text() == self._mine:  # never remove a lock taken over from us
                self.path.unlink()
        except OSError:
            pass
