"""Fully connected network over vectors, token pairs (shared embedding) or one-hot tokens."""

from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field
from torch import nn

from dynamics_lab.config import NamedSection
from dynamics_lab.models.layers import ACTIVATIONS, scale_init_
from dynamics_lab.registry import MODELS
from dynamics_lab.tasks.base import TaskSpec


class MLPConfig(NamedSection):
    name: Literal["mlp"] = "mlp"
    width: int = Field(128, ge=1)
    depth: int = Field(1, ge=0)  # hidden layers
    activation: Literal["relu", "gelu", "tanh", "quadratic", "linear"] = "relu"
    embed_dim: Optional[int] = Field(64, ge=1)  # token inputs; null means one-hot tokens
    bias: bool = True
    init_scale: float = Field(1.0, gt=0)


@MODELS.register("mlp")
class MLP(nn.Module):
    """Token inputs are embedded by one shared table (or one-hot) and concatenated."""

    Config = MLPConfig

    def __init__(self, config: MLPConfig, spec: TaskSpec):
        super().__init__()
        self.config = config
        self.n_tokens = spec.n_tokens
        if spec.n_tokens is not None and config.embed_dim is not None:
            self.embed = nn.Embedding(spec.n_tokens, config.embed_dim)
            in_dim = spec.input_shape[0] * config.embed_dim
        else:
            self.embed = None
            per_position = spec.n_tokens if spec.n_tokens is not None else 1
            in_dim = per_position * int(torch.tensor(spec.input_shape).prod())
        layers: list[nn.Module] = []
        for _ in range(config.depth):
            layers += [nn.Linear(in_dim, config.width, bias=config.bias),
                       ACTIVATIONS[config.activation]()]
            in_dim = config.width
        layers.append(nn.Linear(in_dim, spec.n_outputs, bias=config.bias))
        self.net = nn.Sequential(*layers)
        scale_init_(self, config.init_scale)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input vector: embeddings or one-hot tokens concatenated, or x flattened."""
        if self.embed is not None:
            return self.embed(x).flatten(1)
        if self.n_tokens is not None:
            return nn.functional.one_hot(x, self.n_tokens).flatten(1).to(self.net[0].weight.dtype)
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.features(x))
