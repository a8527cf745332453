"""Many iterative solvers, one batched operator: each solver runs in its own thread, and their
operator calls meet in a rendezvous that applies them all in one batched call.

An ensemble's members each run their own Lanczos (or tracker), converging on their own, yet a
round of their products costs one vmapped or stacked pass instead of K. A solver needs no
change: it is handed a callable that blocks until every solver still running has asked for its
product (or finished), then gets its own column back. Members that finish leave; the others go
on in smaller rounds. An error in the batched call reaches every solver waiting on that round.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

# {member: vector} -> {member: operator applied to it}, all in one pass.
BatchedApply = Callable[[dict[int, Tensor]], dict[int, Tensor]]


class Lockstep:
    """The rendezvous for `members`' operator calls; `rounds` counts batched calls made."""

    def __init__(self, members: Sequence[int], apply: BatchedApply):
        self._apply = apply
        self._running = set(members)
        self._pending: dict[int, Tensor] = {}
        self._results: dict[int, Tensor | BaseException] = {}
        self._cond = threading.Condition()
        self.rounds = 0

    def __call__(self, member: int, v: Tensor) -> Tensor:
        """The operator applied to member's `v`, computed with the others' in one round."""
        with self._cond:
            self._pending[member] = v
            self._maybe_run()
            while member not in self._results:
                self._cond.wait()
            out = self._results.pop(member)
        if isinstance(out, BaseException):
            raise out
        return out

    def leave(self, member: int) -> None:
        """Member's solver is done (or failed): later rounds go on without it."""
        with self._cond:
            self._running.discard(member)
            self._maybe_run()

    def _maybe_run(self) -> None:
        # Called with the lock held by the last solver to arrive; it computes the round.
        if not self._pending or set(self._pending) != self._running:
            return
        pending, self._pending = self._pending, {}
        try:
            results: dict[int, Any] = self._apply(pending)
        except BaseException as exc:  # every waiting solver sees the failure
            results = dict.fromkeys(pending, exc)
        self.rounds += 1
        self._results.update(results)
        self._cond.notify_all()


def run_in_lockstep(tasks: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run `tasks` (one per member) in threads and return their results in order; a task's
    exception is re-raised here after all have ended."""
    results: list[Any] = [None] * len(tasks)
    errors: list[BaseException | None] = [None] * len(tasks)

    def run(i: int) -> None:
        try:
            results[i] = tasks[i]()
        except BaseException as exc:
            errors[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(tasks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for error in errors:
        if error is not None:
            raise error
    return results


def stack_columns(vectors: dict[int, Tensor], size: int, dim: int, like: Tensor) -> Tensor:
    """A (size, dim) block with each member's vector in its row and zeros elsewhere."""
    block = torch.zeros(size, dim, dtype=like.dtype, device=like.device)
    for member, v in vectors.items():
        block[member] = v.to(like.device, like.dtype).reshape(-1)
    return block
