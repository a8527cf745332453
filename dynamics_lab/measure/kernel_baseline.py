"""KernelBaseline: the lazy limit of a run, kernel regression with the initial tangent kernel K0.

A network trained in the lazy regime stays on its linearization around the initial weights, and
gradient descent on the squared loss then converges to the kernel regression predictor of K0:
    f_lazy(x) = f_0(x) + K0(x, X) K0(X, X)^+ (y - f_0(X))
(X, y: the training set). Kumar et al. (2023) compare a grokking network's test loss with this
one's: the test loss plateaus near it while the network is lazy, and falls below it only once
features are learned. Measured once, at the first scheduled step (the initial weights), in
float64 on a copy of the network, over the datamodule's `splits` (train, val):
  kernel/lazy_test_loss    the run's loss (its `loss_fn`) of f_lazy on the held-out split
  kernel/lazy_train_loss   the same on the training split (~0 when K0 interpolates)
  kernel/lazy_rank         the numerical rank of K0(X, X) (relative cutoff `rcond`)
`max_train` / `max_test` cap the examples used (the first ones of each split): K0 over the
whole training set is the regression's kernel, so `max_train` below it changes the predictor.
"""

from __future__ import annotations

import copy
from typing import Any

import lightning as L
import torch
from pydantic import Field
from torch import nn
from typing_extensions import override

from dynamics_lab.linalg.ntk import empirical_ntk
from dynamics_lab.measure.base import Measurement, MeasurementConfig
from dynamics_lab.metric_names import Kernel
from dynamics_lab.offers import SPLITS, offered
from dynamics_lab.registry import MEASUREMENTS


class KernelBaselineConfig(MeasurementConfig):
    max_train: int = Field(4096, ge=1)
    max_test: int = Field(4096, ge=1)
    rcond: float = Field(1e-12, gt=0, lt=1)  # eigenvalues below rcond x the largest are dropped


def kernel_regression(k_train: torch.Tensor, k_cross: torch.Tensor, residual: torch.Tensor,
                      rcond: float = 1e-12) -> tuple[torch.Tensor, int]:
    """(K(x, X) K(X, X)^+ residual, numerical rank of K(X, X)) by an eigendecomposition, the
    pseudo-inverse dropping eigenvalues below rcond x the largest."""
    sym = (k_train + k_train.T) / 2
    vals, vecs = torch.linalg.eigh(sym)
    keep = vals > rcond * vals.abs().max()
    inv = torch.where(keep, 1.0 / torch.where(keep, vals, torch.ones_like(vals)),
                      torch.zeros_like(vals))
    coef = vecs @ (inv[:, None] * (vecs.T @ residual))
    return k_cross @ coef, int(keep.sum())


@MEASUREMENTS.register("kernel_baseline")
class KernelBaseline(Measurement):
    """Train and test loss of kernel regression with the initial NTK (measured once).

    Example:
        >>> trainer = L.Trainer(callbacks=[KernelBaseline(max_train=550)])
    """

    Config = KernelBaselineConfig
    prefix = Kernel.PREFIX
    uses_probe = False
    config: KernelBaselineConfig
    _done = False  # measured already (an instance sets its own once it has)

    @override
    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule,
                model: nn.Module) -> dict[str, float]:
        if self._done:
            return {}
        splits = offered(getattr(trainer, "datamodule", None), SPLITS) or {}
        if "train" not in splits or "val" not in splits:
            return {}
        self._done = True
        return self.baseline(model, splits["train"], splits["val"], self.loss(pl_module))

    def baseline(self, model: nn.Module, train, test, loss_fn) -> dict[str, float]:
        """The lazy predictor's losses from a network at its initial weights."""
        c = self.config
        net = copy.deepcopy(model).double().eval()
        ref = next(net.parameters())
        x, y = (t[: c.max_train].to(ref.device) for t in train)
        xt, yt = (t[: c.max_test].to(ref.device) for t in test)
        x, xt = x.double(), xt.double()
        with torch.no_grad():
            f0, f0t = net(x), net(xt)
        out = f0.reshape(len(x), -1)
        if out.shape[1] != 1:
            return {}  # kernel regression of one output; a traced kernel would mix outputs
        k_train = empirical_ntk(net, x)
        k_cross = empirical_ntk(net, xt, x2=x)
        residual = y.double().reshape(len(x), 1) - out
        fit, rank = kernel_regression(k_train, k_cross, residual, c.rcond)
        train_fit, _ = kernel_regression(k_train, k_train, residual, c.rcond)
        test_pred = f0t.reshape(len(xt), 1) + fit
        train_pred = out + train_fit
        with torch.no_grad():
            test_loss = loss_fn(test_pred.to(yt.dtype).reshape(yt.shape), yt)
            train_loss = loss_fn(train_pred.to(y.dtype).reshape(y.shape), y)
        return {Kernel.LAZY_TEST_LOSS: float(test_loss),
                Kernel.LAZY_TRAIN_LOSS: float(train_loss), Kernel.LAZY_RANK: float(rank)}

    @override
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "done": self._done}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._done = bool(state_dict.get("done", False))
