"""The one-layer transformer of the grokking interpretability work (Nanda et al. 2023)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from dynamics_lab.models.layers import ACTIVATIONS
from dynamics_lab.registry import MODELS
from dynamics_lab.schema import NamedSection
from dynamics_lab.tasks.base import TaskSpec


class TransformerConfig(NamedSection):
    d_model: int = Field(128, ge=1)
    n_heads: int = Field(4, ge=1)
    d_mlp: int = Field(512, ge=1)
    n_layers: int = Field(1, ge=1)
    activation: Literal["relu", "gelu"] = "relu"
    layer_norm: bool = False

    @model_validator(mode="after")
    def _heads_divide(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        return self


class Block(nn.Module):
    """Causal self-attention then an MLP, each residual; LayerNorm only when asked."""

    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.n_heads = c.n_heads
        self.qkv = nn.Linear(c.d_model, 3 * c.d_model, bias=False)
        self.out = nn.Linear(c.d_model, c.d_model, bias=False)
        self.mlp = nn.Sequential(nn.Linear(c.d_model, c.d_mlp), ACTIVATIONS[c.activation](),
                                 nn.Linear(c.d_mlp, c.d_model))
        norm = nn.LayerNorm if c.layer_norm else nn.Identity
        self.ln1, self.ln2 = norm(c.d_model), norm(c.d_model)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, t, d = h.shape
        q, k, v = self.qkv(self.ln1(h)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for z in (q, k, v))
        attn = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        h = h + self.out(attn.transpose(1, 2).reshape(b, t, d))
        return h + self.mlp(self.ln2(h))


@MODELS.register("transformer")
class Transformer(nn.Module):
    """Reads the token sequence plus a trailing '=' token; predicts from the last position."""

    Config = TransformerConfig

    def __init__(self, config: TransformerConfig, spec: TaskSpec):
        super().__init__()
        if spec.n_tokens is None:
            raise ValueError("the transformer needs a token task (e.g. modular_arithmetic)")
        self.config = config
        self.equals_token = spec.n_tokens
        seq_len = spec.input_shape[0] + 1
        self.embed = nn.Embedding(spec.n_tokens + 1, config.d_model)
        self.pos = nn.Parameter(torch.randn(seq_len, config.d_model) / math.sqrt(config.d_model))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.unembed = nn.Linear(config.d_model, spec.n_outputs, bias=False)
        nn.init.normal_(self.embed.weight, std=1 / math.sqrt(config.d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        equals = torch.full_like(x[:, :1], self.equals_token)
        h = self.embed(torch.cat([x, equals], dim=1)) + self.pos
        for block in self.blocks:
            h = block(h)
        return self.unembed(h[:, -1])
