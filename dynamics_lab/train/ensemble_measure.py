"""Measurements inside an ensemble: every member runs its own copy of each measurement callback,
on its own network, logging to its own run, exactly as a single run would.

`EnsembleMeasurements` is the one callback the ensemble's Trainer sees. At each hook it hands
every member's callbacks the member's view of the Trainer and module (`ensemble_members.py`),
member by member, in the order the config lists them. A Hessian measurement that is due runs
for all members at once instead: each member's solver (Lanczos or the tracker) runs in its own
thread and converges on its own, while their products meet in rounds of one stacked backward
(`linalg/lockstep.py`, `linalg/member_hvp.py`). Checkpoints carry every member's callback state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from typing_extensions import override

from dynamics_lab.linalg.lockstep import Lockstep, run_in_lockstep, stack_columns
from dynamics_lab.linalg.member_hvp import StackedHessian, has_random_layers
from dynamics_lab.train.ensemble_members import (
    MemberModule,
    MemberTrainer,
    member_network,
    member_optimizer,
)

HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_train_end")


class MemberOperator:
    """Member m's Hessian-vector product, answered in the members' lockstep rounds."""

    def __init__(self, lockstep: Lockstep, member: int, dim: int, like: torch.Tensor):
        self.lockstep, self.member, self.dim = lockstep, member, dim
        self.dtype, self.device = like.dtype, like.device

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return self.lockstep(self.member, v.reshape(-1))

    def matmat(self, v: torch.Tensor, batched: bool = False) -> torch.Tensor:
        v = v.reshape(self.dim, -1)
        return torch.stack([self(v[:, j]) for j in range(v.shape[1])], dim=1)

    def release(self) -> None:
        self.lockstep.leave(self.member)

    def __enter__(self) -> MemberOperator:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.release()


class EnsembleMeasurements(L.Callback):
    """`members[m]` is member m's list of measurement callbacks (built from its own config);
    `tasks[m]` its datamodule; `loggers[m]` its loggers; `roots[m]` its run dir."""

    def __init__(self, members: list[list], tasks: list, loggers: list[list], roots: list[str]):
        self.members, self.tasks, self.member_loggers, self.roots = members, tasks, loggers, roots
        self._views: tuple | None = None

    def observes(self, step: int) -> bool:
        """The steps after which some member measures (fused steps run up to them)."""
        return any(cb.schedule(step) for callbacks in self.members[:1] for cb in callbacks)

    # -- the members' views ------------------------------------------------------------------

    def _member_views(self, trainer: L.Trainer, module: Any) -> list[tuple[Any, Any]]:
        """(MemberTrainer, MemberModule) per member, rebuilt when the stacked tensors move."""
        params, buffers = module._state()
        key = tuple(t.data_ptr() for t in (*params.values(), *buffers.values()))
        if self._views is None or self._views[0] != key:
            networks = [member_network(module.skeleton[0], params, buffers, m)
                        for m in range(module.size)]
            self._views = (key, networks)
        networks = self._views[1]
        stacked = list(params.values())

        def optimizers(m: int, network: torch.nn.Module) -> Callable[[], list]:
            # Built when a measurement reads it: the member's step size and state rows now.
            return lambda: [member_optimizer(_unwrap(opt), stacked, list(network.parameters()),
                                             m, module.size, module.member_hyper(m))
                            for opt in trainer.optimizers[:1]]

        return [(MemberTrainer(trainer, loggers=self.member_loggers[m], callbacks=self.members[m],
                               datamodule=self.tasks[m], root_dir=self.roots[m],
                               optimizers=optimizers(m, network)),
                 MemberModule(module, network)) for m, network in enumerate(networks)]

    def _alive(self, module: Any) -> list[int]:
        return [m for m in range(module.size) if not module.diverged[m]]

    # -- hooks -------------------------------------------------------------------------------

    def _each(self, hook: str, trainer: L.Trainer, module: Any, *args: Any) -> None:
        views = self._member_views(trainer, module)
        alive = self._alive(module)
        for j in range(len(self.members[0])):
            callbacks = [self.members[m][j] for m in alive]
            if self._lockstep_due(hook, trainer, callbacks, module):
                self._in_lockstep(hook, alive, callbacks, [views[m] for m in alive], module,
                                  *args)
                continue
            for m, callback in zip(alive, callbacks):
                getattr(callback, hook)(*views[m], *args)

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        views = self._member_views(trainer, pl_module)
        for m, callbacks in enumerate(self.members):
            for callback in callbacks:
                callback.on_fit_start(*views[m])

    @override
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        self._each("on_train_batch_start", trainer, pl_module, batch, batch_idx)

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self._each("on_train_batch_end", trainer, pl_module, outputs, batch, batch_idx)

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._each("on_train_end", trainer, pl_module)

    # -- Hessian measurements in lockstep ----------------------------------------------------

    def _lockstep_due(self, hook: str, trainer: L.Trainer, callbacks: list, module: Any) -> bool:
        from dynamics_lab.measure.hessian import HessianSpectrum

        first = callbacks[0] if callbacks else None
        if len(callbacks) < 2 or not isinstance(first, HessianSpectrum):
            return False
        c = first.config
        if c.backend != "lanczos" or c.chunk_size is not None or c.hvp_method == "func" \
                or has_random_layers(module.skeleton[0]):
            return False
        step = trainer.global_step
        due = hook == "on_train_end" or first.schedule(step)
        return due and step != first._last_step

    def _in_lockstep(self, hook: str, rows: list[int], callbacks: list, views: list,
                     module: Any, *args: Any) -> None:
        params, buffers = module._state()
        state: dict[str, StackedHessian] = {}

        def apply(vectors: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
            # One graph over the members still iterating; rebuilt over fewer rows once half of
            # them have converged, so a round never costs more than twice its members' share.
            active = sorted(rows[i] for i in vectors)
            hessian = state.get("hessian")
            if hessian is None or 2 * len(active) <= len(hessian.rows):
                if hessian is not None:
                    hessian.release()
                hessian = state["hessian"] = StackedHessian(
                    module.skeleton[0], params, buffers, callbacks[0].loss(module),
                    _member_probes(callbacks, rows, module.size),
                    seed=callbacks[0].config.probe_seed,
                    rows=None if len(active) == module.size else active)
            where = {row: r for r, row in enumerate(hessian.rows)}
            like = next(iter(vectors.values()))
            block = stack_columns({where[rows[i]]: v for i, v in vectors.items()},
                                  len(hessian.rows), hessian.dim, like)
            out = hessian(block)
            return {i: out[where[rows[i]]] for i in vectors}

        lockstep = Lockstep(range(len(callbacks)), apply)
        originals = [cb.operator for cb in callbacks]
        for i, cb in enumerate(callbacks):
            cb.operator = _operator_for(lockstep, i, cb)

        def task(i: int) -> Callable[[], None]:
            def run() -> None:
                try:
                    getattr(callbacks[i], hook)(*views[i], *args)
                finally:
                    lockstep.leave(i)
            return run

        try:
            run_in_lockstep([task(i) for i in range(len(callbacks))])
        finally:
            for cb, original in zip(callbacks, originals):
                cb.operator = original
            if "hessian" in state:
                state["hessian"].release()

    # -- checkpointed state ------------------------------------------------------------------

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"members": [[cb.state_dict() for cb in callbacks] for callbacks in self.members]}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for callbacks, states in zip(self.members, state_dict.get("members", [])):
            for callback, state in zip(callbacks, states):
                callback.load_state_dict(state)


def _operator_for(lockstep: Lockstep, i: int, callback: Any) -> Callable:
    def operator(model: torch.nn.Module, loss_fn: Callable) -> contextlib.AbstractContextManager:
        like = next(p for p in model.parameters() if p.requires_grad)
        dim = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return MemberOperator(lockstep, i, dim, like)
    return operator


def _member_probes(callbacks: list, rows: list[int], size: int) -> tuple[torch.Tensor, ...]:
    """Each member's probe (x, y) stacked in member order; rows of members not measured borrow
    a measured member's probe (their products are not used)."""
    probes = {row: cb.probe for row, cb in zip(rows, callbacks) if cb.probe is not None}
    spare = next(iter(probes.values()))
    return tuple(torch.stack([probes.get(m, spare)[k] for m in range(size)]) for k in (0, 1))


def _unwrap(optimizer: Any) -> Any:
    return getattr(optimizer, "_optimizer", optimizer)
