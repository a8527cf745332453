"""Deep linear network W_L ... W_1 x without biases: the solvable model of stepwise learning.

Init: every entry of every layer is N(0, init_scale^2 / width), so a unit input direction v has
|W_1 v| ~ init_scale, a unit output direction u has |W_L^T u| ~ init_scale, and each hidden layer
multiplies norms by ~init_scale: `init_scale` is the per-layer, per-mode amplitude u0 that the
small-init theory of the stepwise phenomenon is written in. With depth 1 there is no hidden
width and the one matrix gets the usual N(0, init_scale^2 / in_dim).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from dynamics_lab.registry import MODELS
from dynamics_lab.schema import NamedSection
from dynamics_lab.tasks.base import TaskSpec


class DeepLinearConfig(NamedSection):
    depth: int = Field(2, ge=1)  # number of weight matrices
    width: int = Field(16, ge=1)  # every hidden layer
    init_scale: float = Field(0.01, gt=0)  # per-layer gain u0 (see module docstring)


@MODELS.register("deep_linear")
class DeepLinear(nn.Module):
    """Flattened vector inputs through `depth` bias-free linear maps."""

    Config = DeepLinearConfig

    def __init__(self, config: DeepLinearConfig, spec: TaskSpec):
        super().__init__()
        if spec.n_tokens is not None:
            raise ValueError("deep_linear needs vector inputs; this task gives tokens")
        self.config = config
        in_dim = int(torch.tensor(spec.input_shape).prod())
        dims = [in_dim] + [config.width] * (config.depth - 1) + [spec.n_outputs]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(dims, dims[1:]))
        std = config.init_scale / (config.width if config.depth > 1 else in_dim) ** 0.5
        with torch.no_grad():
            for layer in self.layers:
                layer.weight.normal_(0.0, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        for layer in self.layers:
            h = layer(h)
        return h

    def end_to_end(self) -> torch.Tensor:
        """The product W_L ... W_1 (out x in): the map the network computes."""
        product = self.layers[0].weight
        for layer in self.layers[1:]:
            product = layer.weight @ product
        return product
