"""One ensemble member as a measurement sees it: its network, its Trainer and its optimizer.

A measurement callback is written for one model in one Trainer. Inside an ensemble, member m's
callbacks are handed a `MemberTrainer` and a `MemberModule` instead: the network is a real
`nn.Module` whose parameters are live views of row m of the stacked tensors (no copy, so always
at the current step), the loggers, callbacks, callback_metrics, run dir and datamodule are the
member's own, and the optimizer is the member's slice of the stacked one (its step size, weight
decay and state rows), so sharpness is compared with the member's own stability threshold.
Everything else (global_step, max_steps, sanity_checking, ...) is the ensemble's Trainer.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def member_network(skeleton: nn.Module, params: dict[str, torch.Tensor],
                   buffers: dict[str, torch.Tensor], member: int) -> nn.Module:
    """`skeleton`'s architecture with member `member`'s stacked rows as its (aliased) tensors."""
    net = copy.deepcopy(skeleton)
    for name, stacked in params.items():
        owner, _, leaf = name.rpartition(".")
        module = net.get_submodule(owner)
        module._parameters[leaf] = nn.Parameter(stacked.detach()[member],
                                                requires_grad=stacked.requires_grad)
    for name, stacked in buffers.items():
        owner, _, leaf = name.rpartition(".")
        net.get_submodule(owner)._buffers[leaf] = stacked.detach()[member]
    return net


def member_optimizer(optimizer: torch.optim.Optimizer, stacked: list[torch.Tensor],
                     views: list[torch.Tensor], member: int, size: int,
                     hyper: dict[str, float]) -> torch.optim.Optimizer:
    """The stacked optimizer restricted to one member: same class (thresholds dispatch on it),
    one group over the member's parameter views with its `hyper` values (lr, weight_decay),
    and each state tensor with a leading member axis cut to the member's row."""
    view = object.__new__(type(optimizer))
    view.defaults = optimizer.defaults
    (group,) = optimizer.param_groups  # the ensemble builds one group over all stacked tensors
    view.param_groups = [{**group, **hyper, "params": list(views)}]
    state: dict[torch.Tensor, dict[str, Any]] = {}
    for p, v in zip(stacked, views):
        rows = optimizer.state.get(p)
        if rows:
            state[v] = {k: t[member] if torch.is_tensor(t) and t.dim() and t.shape[0] == size
                        and t.shape == p.shape else t for k, t in rows.items()}
    view.state = state
    return view


class MemberModule:
    """The LightningModule as member m's measurements see it: `.model` is the member's network;
    the loss function and everything else come from the ensemble module."""

    def __init__(self, ensemble: Any, network: nn.Module):
        self._ensemble, self.model = ensemble, network

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ensemble, name)


class MemberTrainer:
    """The Trainer as member m's measurements see it (see the module docstring)."""

    def __init__(self, trainer: Any, *, loggers: list, callbacks: list, datamodule: Any,
                 root_dir: str, optimizers: Callable[[], list]):
        self._trainer, self._optimizers = trainer, optimizers
        self.loggers, self.callbacks, self.datamodule = loggers, callbacks, datamodule
        self.default_root_dir = root_dir
        self.callback_metrics: dict[str, torch.Tensor] = {}

    @property
    def optimizers(self) -> list:
        """The member's slice of the optimizer, built on demand (most hooks never read it)."""
        return self._optimizers()

    @property
    def logger(self) -> Any:
        return self.loggers[0] if self.loggers else None

    @property
    def train_dataloader(self) -> Any:
        return self.datamodule.train_dataloader()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trainer, name)
