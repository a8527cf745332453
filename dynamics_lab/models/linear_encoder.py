"""Linear encoder f(x) = W x applied to the last axis: one view (n, m) or both views of a pair
(n, 2, m) at once, as the linear model of self-supervised learning (Simon et al. 2023) has it.

Init: every entry of W (d x m) is N(0, init_scale^2 / m), so a unit input direction v has
|W v|^2 ~ init_scale^2 d / m on average: small `init_scale` is the small-initialisation regime in
which the embedding learns the eigenmodes of the views' cross-correlation one at a time.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from dynamics_lab.registry import MODELS
from dynamics_lab.schema import NamedSection
from dynamics_lab.tasks.base import TaskSpec


class LinearEncoderConfig(NamedSection):
    init_scale: float = Field(1e-3, gt=0)  # entries N(0, init_scale^2 / in_dim)


@MODELS.register("linear_encoder")
class LinearEncoder(nn.Module):
    """A bias-free linear map from a view's last axis to `spec.n_outputs` embedding dims."""

    Config = LinearEncoderConfig

    def __init__(self, config: LinearEncoderConfig, spec: TaskSpec):
        super().__init__()
        if spec.n_tokens is not None or len(spec.input_shape) != 1:
            raise ValueError("linear_encoder needs vector views; this task gives "
                             f"{'tokens' if spec.n_tokens else spec.input_shape}")
        self.config = config
        (in_dim,) = spec.input_shape
        self.linear = nn.Linear(in_dim, spec.n_outputs, bias=False)
        with torch.no_grad():
            self.linear.weight.normal_(0.0, config.init_scale / in_dim**0.5)

    @property
    def weight(self) -> torch.Tensor:
        """W, d x m."""
        return self.linear.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)
